"""Inference (deploy) forms: the contract each foldable module follows, and the one walker.

A module that has a faster inference form subclasses :class:`DeployMixin`. It takes a
``deploy`` constructor argument that builds that form directly (so a folded checkpoint loads
with ``strict=True``), and its :meth:`~DeployMixin.switch_to_deploy` turns a trained module
into the same form in place, folding only what it owns. :func:`switch_to_deploy` applies them
all, in any order, to a whole model.

mmcv's ``fuse_conv_bn`` (what mmdet's ``benchmark.py --fuse-conv-bn`` and many users'
scripts call) folds every BatchNorm into the ``Conv2d`` registered before it among its
parent's children, whether or not the norm reads that convolution's output. The layers are
written so that this is exact: where a norm reads the convolution before it (the stem and
merging layers, the MLP's ``fc1``/``norm``) mmcv's fold is the one :meth:`DeployMixin._fold`
makes, and the folds accept its result (an ``nn.Identity`` norm); where a norm does not
(PAT_ch's gate and post-gating norms, PAT_sp) the norms are registered before the
convolutions, so mmcv finds no pair there and leaves them to ``switch_to_deploy()``.
Reordering rather than overriding keeps the state-dict keys, and leaves mmcv's speed-up
where it is correct. ``tests/test_stack_tools.py`` compares the outputs before and after.
"""
from typing import List

import torch.nn as nn

from .mixer_contract import SpatialMixer


class DeployMixin:
    """Base of the modules with an inference form (``deploy=True``).

    Subclasses set ``self.deploy`` in ``__init__`` and implement :meth:`_fold`, which rewrites
    the module's own layers (e.g. a BatchNorm folded into the convolution before it) so that
    the module computes the same function. A deploy module refuses training mode: its
    BatchNorms are gone.

    Folding does not require eval mode: it reads the running statistics, which only a
    training *forward* changes, and tools call it in either order (mmdeploy's
    ``BaseTask.build_pytorch_model`` calls ``backbone.switch_to_deploy()`` before
    ``model.eval()``, as for RepVGG/MobileOne). The folded module is put in eval mode, since
    it has no training form.
    """

    deploy: bool = False

    def _fold(self) -> None:
        raise NotImplementedError

    def switch_to_deploy(self) -> None:
        """Fold this module into its inference form, in place (after loading the weights);
        the module is left in eval mode."""
        if self.deploy:
            return
        self._fold()
        self.deploy = True
        nn.Module.train(self, False)
        for param in self.parameters():
            param.requires_grad_(False)

    def train(self, mode: bool = True):
        if mode and self.deploy:
            raise RuntimeError(
                f'{type(self).__name__} is in its inference-only (deploy) form: its '
                f'BatchNorms are folded away and it cannot be trained. Build the model with '
                f'deploy=False and load the trained (unfolded) checkpoint to train.')
        return super().train(mode)


def deploy_modules(model: nn.Module) -> List[nn.Module]:
    """The modules of ``model`` with an inference form, in ``model.modules()`` order.

    A mixer without an inference form (:attr:`SpatialMixer.has_inference_form` False, e.g.
    one with a learned split, which must be exported first) keeps its whole subtree as it is:
    its parts are used through its own computation, which their inference forms would break.
    """
    kept = [f'{name}.' for name, m in model.named_modules()
            if isinstance(m, SpatialMixer) and not m.has_inference_form]
    return [m for name, m in model.named_modules()
            if isinstance(m, DeployMixin) and not f'{name}.'.startswith(tuple(kept))]


def switch_to_deploy(model: nn.Module) -> nn.Module:
    """Switch every :class:`DeployMixin` in ``model`` to its inference form; returns ``model``.

    Each module folds only what it owns, so the order does not matter; modules without an
    inference form (e.g. a DPConv mixer before its export) are left as they are and still
    compute their own function. The folded modules are left in eval mode, whatever mode
    ``model`` was in.
    """
    for module in deploy_modules(model):  # a snapshot: folding replaces children
        module.switch_to_deploy()
    return model
