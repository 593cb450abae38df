"""partialnet-mm: PartialNet backbones for MMDetection, MMSegmentation and MMPretrain."""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
# What OpenMMLab packages ship beside their code, in <package>/.mim (where mim and
# mmengine.hub look for them): the configs, the tools and the model index.
MIM_FILES = ('configs', 'tools', 'model-index.yml')
NOT_SHIPPED = shutil.ignore_patterns('__pycache__', '*.pyc')


class BuildWithMimFiles(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` into ``partialnet_mm/.mim``.

    Done at build time into the build directory, so wheels (``pip wheel .``) and
    non-editable installs (``pip install .``) carry them and the source tree stays as it is
    (mmdet's ``add_mim_extension`` copies them into the source package instead). Editable
    installs need no copy: the package finds ``configs/`` next to itself.
    """

    def run(self):
        super().run()
        if self.editable_mode:
            return
        target = osp.join(self.build_lib, 'partialnet_mm', '.mim')
        for name in MIM_FILES:
            src, dst = osp.join(HERE, name), osp.join(target, name)
            if not osp.exists(src):
                raise FileNotFoundError(f'{src} is missing: the package ships it in .mim '
                                        f'(model-index.yml: python tools/make_model_index.py)')
            if osp.isdir(dst):
                shutil.rmtree(dst)
            os.makedirs(target, exist_ok=True)
            if osp.isdir(src):
                shutil.copytree(src, dst, ignore=NOT_SHIPPED)
            else:
                shutil.copyfile(src, dst)


def read_version():
    namespace = {}
    with open(osp.join(HERE, 'partialnet_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(name):
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [line.strip() for line in f
                if line.strip() and not line.startswith('#')]


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
    extras_require={'tests': read_requirements('tests.txt'),
                    'peers': read_requirements('peers.txt')},
    license='Apache-2.0',
    cmdclass={'build_py': BuildWithMimFiles},
    zip_safe=False,
)
