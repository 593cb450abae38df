"""On a CUDA GPU: the folded form in fp32 and fp16, one AMP Mask R-CNN T2 training iteration at
1333x800 (batch 2) and one Semantic FPN T2 iteration at 512x512, with their peak memory.

``tools/gpu_check.sh`` runs these (and the GPU benchmark columns) on a GPU machine and writes
the results file the README's GPU columns come from; on a CPU machine they are skipped.
"""
import copy
import json
import os
import os.path as osp

import pytest
import torch
from conftest import ROOT
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm import PartialNet

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='needs a CUDA GPU; tools/gpu_check.sh runs these on one'),
]
RESULTS = os.environ.get('PARTIALNET_GPU_RESULTS')  # a JSON-lines file gpu_check.sh collects


def record(**result):
    """Append a measurement to the results file (when gpu_check.sh asks for one)."""
    print(result)
    if RESULTS:
        with open(RESULTS, 'a') as f:
            f.write(json.dumps(dict(result, device=torch.cuda.get_device_name())) + '\n')


def randomized(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.1)
    return model


@pytest.mark.parametrize('dtype, rtol', [(torch.float32, 1e-4), (torch.float16, 2e-2)],
                         ids=['fp32', 'fp16'])
@pytest.mark.parametrize('arch', ['t0', 't1', 't2'])
def test_folded_equals_unfolded_on_the_gpu(arch, dtype, rtol):
    model = randomized(PartialNet(arch=arch)).eval().cuda()
    folded = copy.deepcopy(model).switch_to_deploy()
    x = torch.randn(2, 3, 224, 320, device='cuda')
    with torch.no_grad(), torch.autocast('cuda', dtype=dtype, enabled=dtype != torch.float32):
        expected, got = model(x), folded(x)
    worst = max(((g.float() - e.float()).abs().max() / e.float().abs().max()).item()
                for g, e in zip(got, expected))
    record(test='folded_vs_unfolded', arch=arch, dtype=str(dtype), max_rel_diff=worst)
    assert worst <= rtol


def _train_one_iteration(config, scope, batch, build_inputs, amp=True):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model).cuda().train()
        wrapper = build_optim_wrapper(model, dict(
            cfg.optim_wrapper, type='AmpOptimWrapper' if amp else 'OptimWrapper'))
    data = build_inputs()
    model.train_step(data, wrapper)  # warm-up (cuDNN autotuning, allocations)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    log_vars = model.train_step(data, wrapper)
    end.record()
    torch.cuda.synchronize()
    return log_vars, torch.cuda.max_memory_allocated() / 2**20, start.elapsed_time(end)


def test_amp_mask_rcnn_t2_trains_an_iteration_at_1333x800():
    from mmdet.testing import demo_mm_inputs

    def inputs():
        return demo_mm_inputs(2, [[3, 800, 1333]] * 2, num_items=[5, 3], num_classes=80,
                              with_mask=True)

    log_vars, peak_mb, ms = _train_one_iteration('mask_rcnn_partialnet_t2_coco.py', 'mmdet', 2,
                                                 inputs)
    record(test='mask_rcnn_t2_amp_train_iter', input='1333x800', batch=2, peak_mb=peak_mb,
           ms=ms, loss=float(log_vars['loss']))
    assert torch.isfinite(torch.tensor(float(log_vars['loss'])))


def test_semantic_fpn_t2_trains_an_iteration_at_512():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    def inputs():
        samples = []
        for _ in range(2):
            sample = SegDataSample(metainfo=dict(img_shape=(512, 512), ori_shape=(512, 512),
                                                 pad_shape=(512, 512)))
            sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 512, 512)))
            samples.append(sample)
        return dict(inputs=[torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8)
                            for _ in range(2)], data_samples=samples)

    log_vars, peak_mb, ms = _train_one_iteration('fpn_partialnet_t2_ade20k.py', 'mmseg', 2,
                                                 inputs, amp=False)
    record(test='semantic_fpn_t2_train_iter', input='512x512', batch=2, peak_mb=peak_mb, ms=ms,
           loss=float(log_vars['loss']))
    assert torch.isfinite(torch.tensor(float(log_vars['loss'])))
