"""partialnet-mm: PartialNet backbones for MMDetection, MMSegmentation and MMPretrain."""
import os
import os.path as osp
import shutil

from setuptools import Command, find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = osp.dirname(osp.abspath(__file__))
# What OpenMMLab packages ship beside their code, in <package>/.mim (where mim and
# mmengine.hub look for them): the configs, the tools and the model index.
MIM_FILES = ('configs', 'tools', 'model-index.yml')
NOT_SHIPPED = shutil.ignore_patterns('__pycache__', '*.pyc')


def remove_path(path: str) -> None:
    """Remove a file, a link (not what it points to) or a folder, if there."""
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def link_mim_files() -> None:
    """``partialnet_mm/.mim/{configs,tools,model-index.yml}`` as links to the checkout's own,
    for editable installs: mim runs ``<package>/.mim/tools/train.py`` and reads the model
    index there (mmdet's develop mode links them the same way). Relative links, so a moved
    checkout keeps them; ignored by git."""
    target = osp.join(HERE, 'partialnet_mm', '.mim')
    os.makedirs(target, exist_ok=True)
    for name in MIM_FILES:
        link = osp.join(target, name)
        remove_path(link)
        os.symlink(osp.join('..', '..', name), link)


def copy_mim_files(build_lib: str) -> None:
    """:data:`MIM_FILES` copied into ``partialnet_mm/.mim`` of the build directory."""
    target = osp.join(build_lib, 'partialnet_mm', '.mim')
    for name in MIM_FILES:
        src, dst = osp.join(HERE, name), osp.join(target, name)
        if not osp.exists(src):
            raise FileNotFoundError(f'{src} is missing: the package ships it in .mim '
                                    f'(model-index.yml: python tools/make_model_index.py)')
        remove_path(dst)
        os.makedirs(target, exist_ok=True)
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=NOT_SHIPPED)
        else:
            shutil.copyfile(src, dst)


class BuildWithMimFiles(build_py):
    """``build_py`` that also puts :data:`MIM_FILES` into ``partialnet_mm/.mim``.

    Wheels (``pip wheel .``) and non-editable installs (``pip install .``) get copies in the
    build directory, so the source tree stays as it is; editable installs (PEP 660) get links
    in the source package (:func:`link_mim_files`).
    """

    def run(self):
        super().run()
        # setuptools < 64 (e.g. the 60.2 that openmim's openxlab pins) has no editable_mode;
        # its editable installs go through `develop` below
        if getattr(self, 'editable_mode', False):
            link_mim_files()
        else:
            copy_mim_files(self.build_lib)


class LinkMimFiles(Command):
    """``python setup.py mim_links``: the :func:`link_mim_files` links, alone (used by
    ``tools/setup_env.sh`` for its editable install)."""

    description = 'link configs/, tools/ and model-index.yml into partialnet_mm/.mim'
    user_options = []

    def initialize_options(self):
        pass

    def finalize_options(self):
        pass

    def run(self):
        link_mim_files()


class DevelopWithMimFiles(develop):
    """``setup.py develop`` (pip's editable install with setuptools < 64) with the .mim
    links."""

    def run(self):
        super().run()
        link_mim_files()


def read_version():
    namespace = {}
    with open(osp.join(HERE, 'partialnet_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(name):
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [line.strip() for line in f
                if line.strip() and not line.startswith('#')]


# The OpenMMLab library of each extra (partialnet_mm.libraries.LIBRARIES names the same).
LIBRARY_EXTRAS = {extra: read_requirements(f'{extra}.txt') for extra in ('det', 'seg', 'cls')}


setup(
    name='partialnet-mm',
    version=read_version(),
    description='PartialNet (Partial Channel Network) backbones for OpenMMLab: '
    'detection, segmentation and classification',
    long_description=open(osp.join(HERE, 'README.md')).read()
    if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['partialnet_mm', 'partialnet_mm.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime.txt'),
    # one library is enough: [det] mmdet, [seg] mmseg, [cls] mmpretrain, [all] the three;
    # [deploy]: mmdeploy's own dependencies; mmdeploy itself installs with --no-deps
    # (requirements/deploy.txt says why); [peers]: timm, for the FasterNet peers
    extras_require=dict(LIBRARY_EXTRAS, all=sum(LIBRARY_EXTRAS.values(), []),
                        tests=read_requirements('tests.txt'),
                        deploy=read_requirements('deploy.txt'),
                        peers=read_requirements('peers.txt')),
    license='Apache-2.0',
    cmdclass={'build_py': BuildWithMimFiles, 'develop': DevelopWithMimFiles,
              'mim_links': LinkMimFiles},
    zip_safe=False,
)
