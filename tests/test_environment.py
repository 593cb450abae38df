"""The pinned stack works here, and each piece of ``partialnet_mm.compat`` repairs a real failure."""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn

import partialnet_mm  # noqa: F401  (applies the compat glue)


def test_stack_imports():
    import mmcv
    import mmdet
    import mmengine
    import mmpretrain
    import mmseg
    import pycocotools  # noqa: F401
    import torchvision
    from mmengine.utils import digit_version

    assert digit_version(torch.__version__) >= digit_version('2.0.0')
    assert torchvision.__version__
    # mmdet 3.3 and mmseg 1.2 refuse mmcv >= 2.2
    assert digit_version('2.0.0rc4') <= digit_version(mmcv.__version__) < digit_version('2.2.0')
    assert mmengine.__version__ and mmdet.__version__ and mmseg.__version__
    assert mmpretrain.__version__


def test_mmcv_ops_run_on_cpu():
    from mmcv.ops import RoIAlign, nms

    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert dets.shape == (2, 5)

    feat = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    rois = torch.tensor([[0., 0., 0., 8., 8.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=False)(feat, rois)
    assert out.shape == (1, 1, 2, 2)
    # average of each quadrant's samples: increasing left-to-right and top-to-bottom
    assert out[0, 0, 0, 0] < out[0, 0, 0, 1] < out[0, 0, 1, 0] < out[0, 0, 1, 1]


def test_root_registration_reaches_every_library():
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import MODELS, DefaultScope
    from mmpretrain.registry import MODELS as CLS_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    @MODELS.register_module(force=True)
    class _RootOnlyProbe(nn.Module):

        def __init__(self, width=1):
            super().__init__()
            self.width = width

    try:
        for scope, registry in (('mmdet', DET_MODELS), ('mmseg', SEG_MODELS),
                                ('mmpretrain', CLS_MODELS)):
            with DefaultScope.overwrite_default_scope(scope):
                built = registry.build(dict(type='_RootOnlyProbe', width=3))
            assert isinstance(built, _RootOnlyProbe) and built.width == 3, scope
    finally:
        MODELS._module_dict.pop('_RootOnlyProbe')


# ---------------------------------------------------------------- mmengine checkpoints
TINY_RUNNER = textwrap.dedent('''
    import sys
    import numpy as np
    import torch
    import torch.nn as nn
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from mmengine.runner import Runner


    class TinyModel(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, inputs, labels=None, mode='tensor'):
            out = self.fc(torch.stack(inputs))
            if mode == 'loss':
                return dict(loss=((out - torch.stack(labels)) ** 2).mean())
            return [out]


    class TinySet(torch.utils.data.Dataset):
        metainfo = dict(classes=('a', 'b'))

        def __len__(self):
            return 8

        def __getitem__(self, i):
            return dict(inputs=torch.rand(2), labels=torch.rand(1))


    class TinyMetric(BaseMetric):
        def process(self, data_batch, outputs):
            self.results.append(1.0)

        def compute_metrics(self, results):
            return dict(score=np.float64(0.5))


    def make_runner(work_dir, max_epochs, resume=False):
        loader = dict(dataset=TinySet(), batch_size=2,
                      sampler=dict(type='DefaultSampler', shuffle=True))
        return Runner(
            model=TinyModel(), work_dir=work_dir, train_dataloader=loader,
            val_dataloader=dict(loader, sampler=dict(type='DefaultSampler', shuffle=False)),
            val_cfg=dict(), val_evaluator=dict(type=TinyMetric),
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
            param_scheduler=[dict(type='MultiStepLR', milestones=[1], by_epoch=True)],
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
            randomness=dict(seed=0), resume=resume)
''')


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    """A checkpoint written by an mmengine Runner (message hub, schedulers, optimizer)."""
    work_dir = tmp_path_factory.mktemp('tiny_runner')
    namespace = {}
    exec(TINY_RUNNER, namespace)
    namespace['make_runner'](str(work_dir), max_epochs=1).train()
    return work_dir, namespace['make_runner']


def _load_in_fresh_python(path, import_partialnet):
    code = ('import torch\n' + ('import partialnet_mm\n' if import_partialnet else '') +
            f'torch.load({str(path)!r}, weights_only=True)\nprint("LOADED")\n')
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)


def test_runner_checkpoint_needs_the_allow_list(runner_checkpoint):
    """The failure compat prevents: torch's weights-only load rejects mmengine's checkpoint."""
    work_dir, _ = runner_checkpoint
    plain = _load_in_fresh_python(work_dir / 'epoch_1.pth', import_partialnet=False)
    assert plain.returncode != 0
    assert 'Weights only load failed' in plain.stderr
    glued = _load_in_fresh_python(work_dir / 'epoch_1.pth', import_partialnet=True)
    assert glued.returncode == 0 and 'LOADED' in glued.stdout, glued.stderr


def test_runner_checkpoint_reloads(runner_checkpoint):
    from mmengine.runner import load_checkpoint

    work_dir, make_runner = runner_checkpoint
    model = nn.Module()
    model.fc = nn.Linear(2, 1)
    ckpt = load_checkpoint(model, str(work_dir / 'epoch_1.pth'), strict=True)
    assert ckpt['meta']['epoch'] == 1
    assert torch.equal(model.fc.weight, ckpt['state_dict']['fc.weight'])

    resumed = make_runner(str(work_dir), max_epochs=2, resume=True)
    resumed.train()  # Runner.resume -> weights-only load of message hub & schedulers
    assert resumed.epoch == 2
    assert resumed.message_hub.get_scalar('train/loss').current() >= 0


def test_weights_only_still_refuses_code(tmp_path):
    """The allow-list opens no door: pickled callables outside it are refused, not run."""
    from mmengine.logging import HistoryBuffer

    class RunsShell:

        def __reduce__(self):
            return (os.system, ('echo should-never-run',))

    class ReachesOtherAttribute:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    class ReachesNumpyWriter:

        def __reduce__(self):
            return (getattr, (np.ndarray, 'tofile'))

    for payload in (RunsShell(), ReachesOtherAttribute(), ReachesNumpyWriter()):
        path = tmp_path / 'payload.pth'
        torch.save({'state_dict': {}, 'meta': payload}, path)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)


def test_runner_checkpoint_with_an_empty_history_buffer_loads(tmp_path):
    """An empty HistoryBuffer (a metric logged before any value) pickles its zero-length
    arrays' data as ``bytes()``; the allow-list admits exactly that call."""
    import zipfile

    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'empty_buffer.pth'
    torch.save({'state_dict': {'w': torch.ones(2)},
                'message_hub': {'log_scalars': {'train/loss': HistoryBuffer()}}}, path)
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    assert b'__builtin__\nbytes' in data  # the case this test is about (protocol 2)
    plain = _load_in_fresh_python(path, import_partialnet=False)
    assert plain.returncode != 0 and 'Weights only load failed' in plain.stderr
    glued = _load_in_fresh_python(path, import_partialnet=True)
    assert glued.returncode == 0 and 'LOADED' in glued.stdout, glued.stderr


def test_only_empty_bytes_are_allowed(tmp_path):
    class BigBytes:

        def __reduce__(self):
            return (bytes, (10**9, ))  # would allocate a gigabyte

    path = tmp_path / 'bytes.pth'
    torch.save({'meta': BigBytes()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r'only bytes\(\)'):
        torch.load(path, weights_only=True)
