"""Reliability: crash + resume, atomic checkpoints, CPU distributed, safe loading, clear errors."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, data_root_options

from partialnet_mm.apis import test as run_test
from partialnet_mm.apis import train
from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.engine import NonFiniteLossError
from partialnet_mm.runner import DataError
from partialnet_mm.runner.launch import torchrun_env_from_slurm
from partialnet_mm.tooling.demo_data import make_ade20k_demo, make_coco_demo, make_imagenet_demo

SEG_DEMO = osp.join(ROOT, 'configs', 'demo', 'fpn_partialnet_t0_demo.py')
DET_DEMO = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_partialnet_t0_demo.py')
CLS_DEMO = osp.join(ROOT, 'configs', 'demo', 'partialnet_t0_imagenet_demo.py')


def tool_env():
    """Environment for tool subprocesses: this interpreter's venv first on PATH."""
    return dict(os.environ, PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
                PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')


def train_cmd(config, work_dir, options, *extra):
    return [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir',
            str(work_dir), *extra, '--cfg-options', *options]


def logged_losses(work_dir):
    """{iteration: loss} from every scalars.json under work_dir (all runs, last wins)."""
    losses = {}
    for run in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, run, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            for line in open(path):
                record = json.loads(line)
                if 'loss' in record:
                    losses[record['iter']] = record['loss']
    return losses


@pytest.fixture(scope='module')
def seg_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade') / 'ade20k_demo')
    make_ade20k_demo(root, num_train=8, num_val=2)
    return root


# ------------------------------------------------------------------ crash and resume
@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(seg_data, tmp_path):
    options = data_root_options(seg_data) + [
        'train_cfg.max_iters=8', 'train_cfg.val_interval=100',
        'default_hooks.checkpoint.interval=4', 'default_hooks.checkpoint.max_keep_ckpts=3',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1',
        'train_dataloader.batch_size=2', 'randomness.seed=0',
        'randomness.deterministic=True']
    reference = tmp_path / 'uninterrupted'
    subprocess.run(train_cmd(SEG_DEMO, reference, options), env=tool_env(), check=True,
                   capture_output=True)
    expected = logged_losses(reference)
    assert sorted(expected) == list(range(1, 9))

    crashed = tmp_path / 'crashed'
    proc = subprocess.Popen(train_cmd(SEG_DEMO, crashed, options), env=tool_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = logged_losses(crashed) if crashed.exists() else {}
        if max(done, default=0) >= 5:  # past the iter_4 checkpoint, before iter_8
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    assert (crashed / 'iter_4.pth').is_file() and not (crashed / 'iter_8.pth').exists()

    resumed = subprocess.run(train_cmd(SEG_DEMO, crashed, options, '--resume'), env=tool_env(),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed' in resumed.stdout + resumed.stderr
    assert (crashed / 'iter_8.pth').is_file()
    got = logged_losses(crashed)
    assert max(got) == 8  # continued to the same iteration count
    for it in range(5, 9):
        assert got[it] == pytest.approx(expected[it], rel=1e-5, abs=1e-6), (it, got, expected)


def test_resume_skips_a_truncated_checkpoint(tmp_path):
    from partialnet_mm.runner import find_resume_checkpoint
    good = tmp_path / 'iter_4.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}, 'meta': {'iter': 4}}, good)
    broken = tmp_path / 'iter_8.pth'
    data = open(good, 'rb').read()
    open(broken, 'wb').write(data[:len(data) // 2])  # what a kill during a plain write leaves
    os.utime(broken, (time.time() + 5, time.time() + 5))
    (tmp_path / 'last_checkpoint').write_text(str(broken))
    with pytest.warns(UserWarning, match='missing or incomplete; resuming from .*iter_4.pth'):
        assert find_resume_checkpoint(str(tmp_path)) == str(good)


# ------------------------------------------------------------------ NaN guard
@pytest.mark.slow
def test_non_finite_loss_stops_with_the_last_good_checkpoint_intact(tmp_path):
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(force=True)
    class _PoisonWeightsAtIter(Hook):

        def __init__(self, at_iter):
            self.at_iter = at_iter

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == self.at_iter:
                with torch.no_grad():
                    runner.model.backbone.stem.conv.weight.fill_(float('nan'))

    data_root = str(tmp_path / 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=4, num_val_per_class=1)
    config = tmp_path / 'poisoned.py'
    config.write_text(f"_base_ = [{CLS_DEMO!r}]\n"
                      f"custom_hooks = [*_base_.custom_hooks, "
                      f"dict(type='_PoisonWeightsAtIter', at_iter=5)]\n")
    work_dir = tmp_path / 'work'
    options = data_root_options(data_root) + [
        'train_dataloader.batch_size=4', 'train_cfg.val_interval=100', 'train_cfg.max_epochs=3']
    with pytest.raises(NonFiniteLossError) as stop:
        train(str(config), str(work_dir), cfg_options=options)
    message = str(stop.value)
    assert 'the loss became nan at iteration 6 (epoch 2)' in message
    assert 'Last good checkpoint:' in message and 'epoch_1.pth' in message
    assert not (work_dir / 'epoch_2.pth').exists()
    checkpoint = torch.load(work_dir / 'epoch_1.pth', weights_only=True)
    assert all(torch.isfinite(v).all() for v in checkpoint['state_dict'].values()
               if v.is_floating_point())


# ------------------------------------------------------------------ distributed on CPU
def _sync_bn_worker(rank, world, init_file, x, out_queue):
    import torch.distributed as dist

    from partialnet_mm.engine.distributed import CPUSyncBatchNorm
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    bn = CPUSyncBatchNorm(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1., 2., 3.]))
        bn.bias.copy_(torch.tensor([.1, .2, .3]))
    part = x.chunk(world)[rank].clone().requires_grad_(True)
    out = bn(part)
    (out * torch.arange(out.numel()).view_as(out).float().sin()).sum().backward()
    grad_w = bn.weight.grad.clone()
    dist.all_reduce(grad_w)
    # numpy copies: torch would share tensors by file descriptor, gone once this process ends
    out_queue.put((rank, *(t.detach().numpy().copy() for t in (
        out, part.grad, grad_w, bn.running_mean, bn.running_var))))
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_equals_batchnorm_over_the_global_batch(tmp_path):
    import torch.multiprocessing as mp
    torch.manual_seed(1)
    x = torch.randn(4, 3, 5, 6) * 2 + 1
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_sync_bn_worker, args=(r, 2, str(tmp_path / 'init'), x, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r[0], [torch.from_numpy(a) for a in r[1:]])
                   for r in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(60)

    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1., 2., 3.]))
        bn.bias.copy_(torch.tensor([.1, .2, .3]))
    full = x.clone().requires_grad_(True)
    out = bn(full)
    (out * torch.cat([torch.arange(out.numel() // 2).view(2, 3, 5, 6)] * 2).float().sin()
     ).sum().backward()
    outs = torch.cat([results[0][0], results[1][0]])
    grads = torch.cat([results[0][1], results[1][1]])
    torch.testing.assert_close(outs, out.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads, full.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[0][2], bn.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[0][3], bn.running_mean)
    torch.testing.assert_close(results[1][4], bn.running_var)


def run_dist_train(config, nproc, work_dir, options, port):
    env = dict(tool_env(), PORT=str(port))
    return subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config,
                           str(nproc), '--work-dir', str(work_dir), '--cfg-options', *options],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_dist_train_two_cpu_processes_one_image_each_detection_with_syncbn(tmp_path):
    """One image per process (what S/M/L need at 1333x800): SyncBN pools both processes'
    samples, PAT_ch's pooled gate norm included."""
    data_root = str(tmp_path / 'coco_demo') + '/'
    make_coco_demo(data_root, num_train=8, num_val=2)
    options = data_root_options(data_root, f'{data_root}annotations/instances_val2017.json') + [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=100', 'train_dataloader.batch_size=1',
        'model.backbone.norm_cfg.type=SyncBN', 'default_hooks.logger.interval=1']
    result = run_dist_train(DET_DEMO, 2, tmp_path / 'work', options, 29611)
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # 2 processes
    assert "type='CPUDistributedDataParallel'" in log
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
    ckpt = torch.load(tmp_path / 'work' / 'epoch_1.pth', weights_only=True)
    # 8 images / (2 processes x 1 per batch) = 4 iterations: the data was split between
    # the processes (SyncBN's arithmetic itself is checked against plain BN above)
    assert ckpt['meta']['iter'] == 4
    assert int(ckpt['state_dict']['backbone.stem.norm.num_batches_tracked']) == 4
    gate = 'backbone.stages.0.blocks.0.spatial_mixing.attn.gate_norm.num_batches_tracked'
    assert int(ckpt['state_dict'][gate]) == 4  # the gate norm trained on the pooled pair


@pytest.mark.slow
def test_dist_train_two_cpu_processes_segmentation(seg_data, tmp_path):
    options = data_root_options(seg_data) + [
        'train_cfg.max_iters=2', 'train_cfg.val_interval=100',
        'default_hooks.checkpoint.interval=2', 'train_dataloader.batch_size=2']
    result = run_dist_train(SEG_DEMO, 2, tmp_path / 'work', options, 29612)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / 'work' / 'iter_2.pth').is_file()


# ------------------------------------------------------------------ safe loading
def test_checkpoint_with_code_is_refused_clearly_and_never_run(seg_data, tmp_path):
    from mmengine.runner import load_checkpoint

    marker = tmp_path / 'was_run'

    class Payload:

        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Payload()}, path)
    with pytest.raises(CheckpointError, match=r'refusing to load .*evil\.pth.*posix\.system.*'
                       r'Nothing from it was executed'):
        load_checkpoint(torch.nn.Linear(1, 1), str(path))
    with pytest.raises(CheckpointError, match='refusing to load'):
        run_test(SEG_DEMO, str(path), str(tmp_path / 'test'),
                 cfg_options=data_root_options(seg_data))
    assert not marker.exists()


def test_openmmlab_style_checkpoint_loads_weights_only(tmp_path):
    """An mmcv-1.x-era model-zoo checkpoint: meta with versions, classes, numpy scalars."""
    import numpy as np
    from collections import OrderedDict
    from mmengine.runner import load_checkpoint
    model = torch.nn.Linear(3, 2)
    ckpt = dict(meta=dict(mmcv_version='1.3.17', mmdet_version='2.25.0', epoch=12, iter=87960,
                          CLASSES=('person', 'car'), config='model = dict(...)',
                          hook_msgs=dict(best_score=np.float64(0.41), last_ckpt='x.pth')),
                state_dict=OrderedDict(model.state_dict()),
                optimizer=dict(state={}, param_groups=[dict(lr=0.02, momentum=0.9)]))
    torch.save(ckpt, tmp_path / 'zoo.pth')
    loaded = load_checkpoint(torch.nn.Linear(3, 2), str(tmp_path / 'zoo.pth'), strict=True)
    assert loaded['meta']['CLASSES'] == ('person', 'car')


# ------------------------------------------------------------------ data errors
@pytest.mark.parametrize('config, expected', [
    ('fpn_partialnet_t2_ade20k.py', "'data/ade/ADEChallengeData2016'"),
    ('partialnet_t2_imagenet.py', "'data/imagenet'"),
])
def test_missing_dataset_root_for_segmentation_and_classification(config, expected, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as stop:
        train(osp.join(ROOT, 'configs', config))
    assert 'Dataset not found' in str(stop.value) and expected in str(stop.value)
    assert '--cfg-options' in str(stop.value)


def test_missing_annotation_file_is_named(tmp_path):
    data_root = str(tmp_path / 'coco_demo') + '/'
    make_coco_demo(data_root, num_train=2, num_val=1)
    os.remove(osp.join(data_root, 'annotations', 'instances_train2017.json'))
    with pytest.raises(DataError) as stop:
        train(DET_DEMO, str(tmp_path / 'w'), cfg_options=data_root_options(data_root))
    message = str(stop.value)
    assert "annotation file '" in message and 'instances_train2017.json' in message
    assert 'make_demo_data.py' in message  # a demo set: says how to regenerate it


def test_truncated_annotation_json_is_named(tmp_path):
    data_root = str(tmp_path / 'coco_demo') + '/'
    make_coco_demo(data_root, num_train=2, num_val=1)
    ann = osp.join(data_root, 'annotations', 'instances_train2017.json')
    text = open(ann).read()
    open(ann, 'w').write(text[:len(text) // 2])
    with pytest.raises(DataError) as stop:
        train(DET_DEMO, str(tmp_path / 'w'), cfg_options=data_root_options(data_root))
    message = str(stop.value)
    assert message.startswith('Corrupt or truncated annotation JSON:')
    assert 'instances_train2017.json' in message


@pytest.mark.parametrize('damage', ['delete_image', 'no_marker', 'stale_marker'])
def test_incomplete_demo_directory_is_regenerated(damage, tmp_path):
    root = str(tmp_path / 'coco_demo')
    assert make_coco_demo(root, num_train=3, num_val=1)
    assert not make_coco_demo(root, num_train=3, num_val=1)  # complete: skipped
    image = osp.join(root, 'train2017', '000001.jpg')
    if damage == 'delete_image':
        os.remove(image)
    elif damage == 'no_marker':
        os.remove(osp.join(root, 'DONE.json'))
        open(osp.join(root, 'stray.tmp'), 'w').write('half-written')
    else:
        marker = json.load(open(osp.join(root, 'DONE.json')))
        marker['version'] = -1
        json.dump(marker, open(osp.join(root, 'DONE.json'), 'w'))
    assert make_coco_demo(root, num_train=3, num_val=1)  # regenerated from scratch
    assert osp.isfile(image) and not osp.exists(osp.join(root, 'stray.tmp'))
    assert not make_coco_demo(root, num_train=3, num_val=1)


def test_a_second_run_in_one_process_gets_its_own_visualizer(tmp_path):
    """mmdet/mmseg name the visualizer 'visualizer'; mmengine would hand a second run in the
    same process the first run's instance, and its scalars would land in the first work dir."""
    from mmengine.config import Config
    from mmseg.visualization import SegLocalVisualizer

    from partialnet_mm.runner import own_visualizer
    name = 'partialnet_mm_test_visualizer'
    first = SegLocalVisualizer.get_instance(name, save_dir=str(tmp_path / 'first'))
    cfg = Config(dict(visualizer=dict(type='SegLocalVisualizer', name=name)))
    own_visualizer(cfg)
    assert cfg.visualizer.name != name
    second = SegLocalVisualizer.get_instance(cfg.visualizer.name, save_dir=str(tmp_path / 'b'))
    assert second is not first and second._vis_backends is not first._vis_backends
    unused = Config(dict(visualizer=dict(type='SegLocalVisualizer', name=name + '_unused')))
    own_visualizer(unused)
    assert unused.visualizer.name == name + '_unused'


FAKE_SRUN = r'''#!/usr/bin/env bash
# srun stand-in: records its arguments, then starts --ntasks copies of the command with the
# variables srun gives each task
echo "$@" >"$SRUN_RECORD"
ntasks=1
while [ $# -gt 0 ]; do
  case "$1" in
    --ntasks=*) ntasks="${1#--ntasks=}"; shift ;;
    -p) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
pids=()
for ((i = 0; i < ntasks; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$ntasks SLURM_NODELIST='node[1]' "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
'''
FAKE_SCONTROL = '#!/usr/bin/env bash\necho 127.0.0.1\n'


@pytest.mark.slow
def test_slurm_train_and_test_scripts_on_two_cpu_tasks(tmp_path):
    """tools/slurm_train.sh / slurm_test.sh as a Slurm job of two tasks (srun and scontrol
    stand-ins): each task joins the job's process group from srun's variables."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    data_root = str(tmp_path / 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=2, num_val_per_class=1)
    record = tmp_path / 'srun_args'
    env = dict(tool_env(), GPUS='2', GPUS_PER_NODE='2', MASTER_PORT='29613',
               SRUN_RECORD=str(record))
    env['PATH'] = str(bin_dir) + os.pathsep + env['PATH']
    options = ['--cfg-options', *data_root_options(data_root), 'train_cfg.max_epochs=1',
               'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
               'test_dataloader.batch_size=2']
    work = tmp_path / 'work'
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', 'slurm_train.sh'), 'dev', 'cls',
                             CLS_DEMO, str(work), *options], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    srun_args = record.read_text()
    assert '-p dev --job-name=cls --gres=gpu:2 --ntasks=2' in srun_args
    assert '--launcher=slurm' in srun_args
    log = result.stdout + result.stderr
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert (work / 'epoch_1.pth').is_file()
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', 'slurm_test.sh'), 'dev', 'cls',
                             CLS_DEMO, str(work / 'epoch_1.pth'), '--work-dir',
                             str(tmp_path / 'test'), *options], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert 'accuracy/top1' in result.stdout + result.stderr


def test_slurm_launcher_without_srun_names_the_script(monkeypatch):
    for key in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(DataError, match='slurm_train.sh'):
        torchrun_env_from_slurm()
