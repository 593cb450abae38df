"""DPConv end to end: a short demo training, the learned splits, the exported model's speed.

1. writes a small ImageNet-layout demo set (:mod:`partialnet_mm.tooling.demo_data`);
2. trains ``configs/demo/partialnet_t0_imagenet_dpconv_demo.py`` on it (the gates are frozen
   for the config's warm-up epoch, then learn);
3. exports the last checkpoint (:func:`~partialnet_mm.dpconv.export_checkpoint`);
4. times three classifiers on the same random batch, in eval mode, in interleaved rounds:
   the exported plain model, the fixed ``n_div = 4`` PartialNet-T0 and, for reference, the
   DPConv model before export.
"""
import os
import os.path as osp
import statistics
import time
from typing import Dict

import torch
import torch.nn as nn
from mmengine.runner import load_checkpoint

from ..analysis.models import build_config_model
from ..apis.train import train
from ..dpconv.export import export_checkpoint
from ..runner import data_root_options, load_config
from ..runner.config import project_file
from .demo_data import make_imagenet_demo

DPCONV_DEMO = 'configs/demo/partialnet_t0_imagenet_dpconv_demo.py'
FIXED_DEMO = 'configs/demo/partialnet_t0_imagenet_demo.py'


def train_demo(work_dir: str, epochs: int, images_per_class: int) -> str:
    """Train the DPConv classification demo on a fresh demo set; returns the checkpoint."""
    data_root = osp.join(work_dir, 'data', 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=images_per_class,
                       num_val_per_class=max(images_per_class // 4, 2))
    work = osp.join(work_dir, 'train')
    train(project_file(DPCONV_DEMO), work, cfg_options=data_root_options(data_root) + [
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        'randomness.seed=0'])
    return osp.join(work, f'epoch_{epochs}.pth')


def time_models(models: Dict[str, nn.Module], batch: int, size: int, rounds: int,
                iters: int) -> Dict[str, tuple]:
    """images/s of each model (median, min, max over interleaved rounds)."""
    x = torch.randn(batch, 3, size, size)
    speeds = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():  # warm-up (allocations, kernel selection)
            model(x, mode='tensor')
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for _ in range(iters):
                    model(x, mode='tensor')
                speeds[name].append(batch * iters / (time.perf_counter() - start))
    return {name: (statistics.median(v), min(v), max(v)) for name, v in speeds.items()}


def conv3x3_macs(classifier: nn.Module, size: int) -> int:
    """Multiply-accumulates of the blocks' 3x3 convolutions (the part the split decides)
    for one ``size`` x ``size`` image, as the model computes them in eval mode."""
    backbone, total = classifier.backbone, 0
    for i, stage in enumerate(backbone.stages):
        side = size // backbone.stem_stride // backbone.merge_stride**i
        for block in stage.blocks:
            c = block.spatial_mixing.conv_channels
            total += c * c * 9 * side * side
    return total


def run(work_dir: str, epochs: int = 12, images_per_class: int = 100, size: int = 224,
        batch: int = 16, threads: int = None, rounds: int = 7, iters: int = 3) -> Dict:
    """Steps 1-4; returns the export info, the speeds, the 3x3 MACs and the thread count."""
    checkpoint = train_demo(work_dir, epochs, images_per_class)
    exported = osp.join(work_dir, 'exported', 'partialnet_t0_dpconv_plain.pth')
    exported_cfg = osp.join(work_dir, 'exported', 'partialnet_t0_dpconv_plain.py')
    os.makedirs(osp.dirname(exported), exist_ok=True)
    info = export_checkpoint(checkpoint, exported, project_file(DPCONV_DEMO), exported_cfg)
    models = {}
    for name, config, weights in (('exported (learned splits)', exported_cfg, exported),
                                  ('fixed n_div=4', project_file(FIXED_DEMO), None),
                                  ('DPConv before export', project_file(DPCONV_DEMO),
                                   checkpoint)):
        model = build_config_model(load_config(config))
        if weights is not None:
            load_checkpoint(model, weights, map_location='cpu', strict=True, logger='silent')
        models[name] = model
    if threads:
        torch.set_num_threads(threads)
    speeds = time_models(models, batch, size, rounds, iters)
    macs = {name: conv3x3_macs(model, size) for name, model in models.items()}
    return dict(info=info, speeds=speeds, macs=macs, threads=torch.get_num_threads())
