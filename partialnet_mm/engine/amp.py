"""Mixed precision that also trains where mmengine's ``AmpOptimWrapper`` refuses to: the CPU.

mmengine's :class:`~mmengine.optim.AmpOptimWrapper` asserts a GPU (or NPU, MLU, MUSA) at
construction, although its autocast context (:func:`mmengine.runner.amp.autocast`) supports
the CPU with bfloat16. So a config that asks for AMP, as the ImageNet recipe does, stops on a
machine without GPU, in our tools and in the libraries' own.

:class:`AnyDeviceAmpOptimWrapper` is ``AmpOptimWrapper`` itself wherever that one runs (same
loss scaler, same autocast dtype, same state dict). Without such a device it autocasts to
bfloat16, the one dtype CPU autocast supports, and scales no loss: bfloat16 has float32's
exponent range, so gradients do not underflow (the reason fp16 needs the scaler). Its state
dict still carries a ``loss_scaler`` entry, so checkpoints keep one layout across devices.

mmcv's CPU kernels (NMS, RoIAlign, ...) take float32 only, where its CUDA kernels also take
half precision; under CPU autocast a detector's RPN hands them bfloat16 boxes and features.
Inside the wrapper's training step, :func:`mmcv_ops_in_float32` runs them in float32 and hands
back the dtype they were given, as the CUDA kernels do; the casts are autograd ops around the
op, so its backward (which runs after the step's context) sees float32 as well. Outside the
step (validation, test) nothing is changed.
"""
import contextlib
import inspect
import sys
from typing import Iterator, Optional, Union

import torch
from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                             is_npu_available)
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def amp_device_available() -> bool:
    """Whether mmengine's own ``AmpOptimWrapper`` can be built here."""
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def mmcv_op_functions() -> list:
    """The autograd Functions of mmcv's compiled ops that are imported."""
    found = []
    for name, module in list(sys.modules.items()):
        if not name.startswith('mmcv.ops.') or module is None:
            continue
        found += [obj for obj in vars(module).values()
                  if inspect.isclass(obj) and issubclass(obj, torch.autograd.Function)
                  and obj.__module__ == name and 'forward' in vars(obj)]
    return found


def _floating(value) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _cast(value, dtype):
    if _floating(value):
        return value.to(dtype)
    if isinstance(value, (tuple, list)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _apply_in_float32(apply, device_type: str):
    """``Function.apply`` that runs in float32 under ``device_type`` autocast: its floating
    inputs cast to float32 and its floating outputs back to the first input's dtype, both as
    autograd ops outside the Function, so its own backward only ever sees float32."""
    def apply_in_float32(*args, **kwargs):
        dtypes = [a.dtype for a in args if _floating(a)]
        if not torch.is_autocast_enabled(device_type) or not dtypes:
            return apply(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            out = apply(*_cast(args, torch.float32),
                        **{k: _cast(v, torch.float32) for k, v in kwargs.items()})
        return _cast(out, dtypes[0])
    return apply_in_float32


def _module_aliases(applies: dict) -> list:
    """``(module, name, Function)`` of mmcv.ops' module-level aliases of an ``apply``
    (``roi_align = RoIAlignFunction.apply``), which patching the class does not reach."""
    found = []
    for name, module in list(sys.modules.items()):
        if not name.startswith('mmcv.ops') or module is None:
            continue
        for attr, value in list(vars(module).items()):
            owner = getattr(value, '__self__', None)
            if inspect.isclass(owner) and owner in applies and value == applies[owner]:
                found.append((module, attr, owner))
    return found


@contextlib.contextmanager
def mmcv_ops_in_float32(device_type: str = 'cpu') -> Iterator[None]:
    """Inside: mmcv's ops run in float32 when ``device_type`` autocast is on, returning the
    dtype they were given (as mmcv's CUDA kernels do with half inputs); restored on exit."""
    functions = mmcv_op_functions()
    own = {cls: vars(cls).get('apply') for cls in functions}
    applies = {cls: cls.apply for cls in functions}
    aliases = _module_aliases(applies)
    try:
        for cls, apply in applies.items():
            cls.apply = staticmethod(_apply_in_float32(apply, device_type))
        for module, attr, cls in aliases:
            setattr(module, attr, cls.apply)
        yield
    finally:
        for cls, apply in own.items():
            if apply is None:
                del cls.apply
            else:
                cls.apply = apply
        for module, attr, cls in aliases:
            setattr(module, attr, applies[cls])


@OPTIM_WRAPPERS.register_module()
class AnyDeviceAmpOptimWrapper(AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` on GPU/NPU/MLU/MUSA; bfloat16 autocast on the CPU.

    Args:
        loss_scale (float | str | dict): As ``AmpOptimWrapper`` (used on accelerators; on the
            CPU no loss is scaled).
        dtype (str | torch.dtype, optional): As ``AmpOptimWrapper``. On the CPU only
            ``None`` or bfloat16 (CPU autocast supports no other).
        use_fsdp (bool): As ``AmpOptimWrapper``.
        **kwargs: As :class:`~mmengine.optim.OptimWrapper`.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Optional[Union[str, torch.dtype]] = None,
                 use_fsdp: bool = False,
                 **kwargs):
        if amp_device_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise ValueError(f'AnyDeviceAmpOptimWrapper: dtype={dtype!r} cannot autocast on '
                             f'the CPU, which supports bfloat16 only; set '
                             f'optim_wrapper.dtype=bfloat16 (or leave it unset)')
        if use_fsdp:
            raise ValueError('AnyDeviceAmpOptimWrapper: use_fsdp=True needs a GPU; without '
                             'one, leave optim_wrapper.use_fsdp unset')
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        # Disabled: scale() returns the loss as is, step() is optimizer.step(), update() and
        # load_state_dict() do nothing, state_dict() is {}.
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16

    @contextlib.contextmanager
    def optim_context(self, model):
        """``AmpOptimWrapper``'s context; on the CPU, with mmcv's ops in float32."""
        with super().optim_context(model):
            if self.loss_scaler.is_enabled() or amp_device_available():
                yield
            else:
                with mmcv_ops_in_float32('cpu'):
                    yield
