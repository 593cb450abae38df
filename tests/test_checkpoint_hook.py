"""``AtomicCheckpointHook`` is mmengine's ``CheckpointHook`` plus atomic writes.

A differential test: the same short run (and its ``--resume``) under mmengine's own hook and
under ours, for every option of the hook, writes the same files, the same
``last_checkpoint`` and the same message-hub entries. The atomic part itself (what a failed or
killed save leaves) is tested on real configs in tests/test_faults.py.
"""
import itertools
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner

from partialnet_mm.engine import AtomicCheckpointHook  # noqa: F401  (registers the hook)

# the hub entries mmengine's hook writes (best_* per key indicator with several of them)
HOOK_KEYS = ('last_ckpt', 'keep_ckpt_ids', 'best_ckpt', 'best_score')
RUN_NAMES = itertools.count()


class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.fc(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=((out - torch.stack(labels))**2).mean())
        return [out]


class TinySet(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)), labels=torch.ones(1))


class ScriptedMetric(BaseMetric):
    """Validation scores that go up and down, so ``save_best`` keeps, replaces and keeps
    again (the same sequence for both hooks; a resumed run starts the script anew)."""
    scores = (0.3, 0.5, 0.4, 0.7, 0.6, 0.8, 0.2)

    def __init__(self):
        super().__init__()
        self.calls = 0

    def process(self, data_batch, outputs):
        self.results.append(1.0)

    def compute_metrics(self, results):
        score = self.scores[self.calls % len(self.scores)]
        self.calls += 1
        return dict(accuracy=np.float64(score), loss=np.float64(1 - score / 2))


def run(work_dir, hook, max_epochs, resume=False):
    loader = dict(dataset=TinySet(), batch_size=2,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    runner = Runner(
        model=TinyModel(), work_dir=str(work_dir), train_dataloader=loader,
        val_dataloader=loader, val_cfg=dict(), val_evaluator=dict(type=ScriptedMetric),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(checkpoint=hook, logger=dict(type='LoggerHook', interval=100)),
        randomness=dict(seed=0), resume=resume,
        experiment_name=f'hook_diff_{next(RUN_NAMES)}')  # a message hub of its own
    runner.train()
    return runner


def snapshot(runner, work_dir, root):
    """What a hook leaves behind, with ``root`` (the run's folder) written as ``ROOT``:
    the files (not the log folders) of the work dir and of every ``out_dir``, the text of
    ``last_checkpoint``, the hook's entries in the live message hub and in every checkpoint."""
    def rel(value):
        if isinstance(value, str):
            return value.replace(str(root), 'ROOT')
        if isinstance(value, (list, tuple)):
            return [rel(v) for v in value]
        return value

    def hook_entries(info):
        return {k: rel(v) for k, v in info.items() if k.startswith(HOOK_KEYS)}

    files, checkpoints = {}, {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = osp.join(folder, name)
            if name.endswith('.pth'):
                ckpt = torch.load(path, weights_only=True)
                checkpoints[rel(path)] = (hook_entries(ckpt['message_hub']['runtime_info']),
                                          ckpt['meta']['epoch'], ckpt['meta']['iter'])
            if not name.endswith(('.log', '.json', '.py')):  # not the logs, config dumps
                files[rel(path)] = None
    marker = osp.join(work_dir, 'last_checkpoint')
    return dict(files=sorted(files), checkpoints=checkpoints,
                last_checkpoint=rel(open(marker).read()) if osp.isfile(marker) else None,
                hub=hook_entries(runner.message_hub.runtime_info))


HOOK_OPTIONS = {
    'defaults': dict(interval=1),
    'max_keep_2': dict(interval=1, max_keep_ckpts=2),
    'max_keep_1_no_last': dict(interval=2, max_keep_ckpts=1, save_last=False),
    'max_keep_0': dict(interval=1, max_keep_ckpts=0),
    'by_iter': dict(interval=4, by_epoch=False, max_keep_ckpts=2),
    'interval_-1': dict(interval=-1),
    'save_begin': dict(interval=2, save_begin=3),
    'save_best_auto': dict(interval=1, save_best='auto', max_keep_ckpts=1),
    'save_best_two_rules': dict(interval=2, save_best=['accuracy', 'loss'],
                                rule=['greater', 'less'], max_keep_ckpts=2),
    'save_best_less': dict(interval=1, save_best='accuracy', rule='less'),
    'out_dir': dict(interval=1, max_keep_ckpts=2, out_dir='OUT'),
    'filename_tmpl': dict(interval=1, max_keep_ckpts=2, filename_tmpl='ckpt_{:03d}.pth',
                          save_best='accuracy'),
}


@pytest.mark.parametrize('name', sorted(HOOK_OPTIONS))
def test_atomic_hook_leaves_what_mmengines_hook_leaves(name, tmp_path):
    """4 epochs, then ``--resume`` to 7: files, ``last_checkpoint`` and message-hub entries
    (live and in every checkpoint) are the same under both hooks, after each run."""
    states = {}
    for hook_type in ('CheckpointHook', 'AtomicCheckpointHook'):
        root = tmp_path / hook_type
        options = dict(HOOK_OPTIONS[name])
        if options.get('out_dir') == 'OUT':
            options['out_dir'] = str(root / 'out')
        work_dir = root / 'work'
        hook = dict(type=hook_type, **options)
        first = run(work_dir, hook, max_epochs=4)
        assert [type(h).__name__ for h in first.hooks].count(hook_type) == 1
        after_first = snapshot(first, work_dir, root)
        resumed = run(work_dir, hook, max_epochs=7, resume=True)
        states[hook_type] = (after_first, snapshot(resumed, work_dir, root))
        assert not list(root.rglob('*.part'))
    ours, theirs = states['AtomicCheckpointHook'], states['CheckpointHook']
    assert ours[0] == theirs[0], 'after the first run'
    assert ours[1] == theirs[1], 'after the resumed run'
    # the comparison has something to compare
    assert theirs[1]['checkpoints'] or name in ('interval_-1', ) and theirs[1]['files']


def test_the_crash_of_max_keep_ckpts_minus_one(tmp_path):
    """The first save with mmengine's default ``max_keep_ckpts=-1`` (every shipped config but
    RTMDet's) used to die with "'AtomicCheckpointHook' object has no attribute
    'keep_ckpt_ids'"."""
    run(tmp_path, dict(type='AtomicCheckpointHook', interval=1), max_epochs=2)
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_1.pth', 'epoch_2.pth']
