"""What mmdeploy 1.3.1 needs from torch that this stack's torch (2.14) no longer has.

mmdeploy 1.3.1 (December 2023, the latest release) was written against torch <= 2.1's ONNX
exporter. :func:`mmdeploy_torch_compat` patches torch for the duration of one export and
restores every patched attribute afterwards, whatever happens inside; importing this module
patches nothing and does not import mmdeploy. Each item names its upstream reason:

1. ``torch.onnx.export`` runs the dynamo exporter unless ``dynamo=False`` is passed (the
   default changed in torch 2.9). mmdeploy's rewriters (``mmdeploy.core.RewriterContext``,
   symbolic overrides, custom ops) hook the TorchScript exporter only, and mmdeploy's
   ``mmdeploy.apis.onnx.export`` passes no ``dynamo``; so the patch makes ``dynamo=False``
   the default again. A caller passing ``dynamo`` explicitly keeps its choice.
2. ``torch.onnx.symbolic_opset9._cast_Long`` was removed from torch (the ``_cast_<Type>``
   helpers went with the TorchScript exporter's move to
   ``torch.onnx._internal.torchscript_exporter``). mmdeploy's RoIAlign symbolic
   (``mmdeploy/mmcv/ops/roi_align.py``, every two-stage detector) imports it to cast the RoIs'
   batch indices; it is re-created as the same ``Cast`` to int64.
"""
import contextlib
from typing import Iterator

import torch

# mmdeploy itself without its dependencies: its metadata would take onnx back to 1.17
# (requirements/deploy.txt)
INSTALL_COMMAND = 'pip install -e ".[deploy]" && pip install --no-deps mmdeploy==1.3.1'


def require_mmdeploy():
    """Import mmdeploy, or fail naming the install command."""
    try:
        import mmdeploy
    except ImportError as error:
        raise ImportError(f'exporting through MMDeploy needs mmdeploy ({error}); install it '
                          f'without touching the stack: {INSTALL_COMMAND}') from error
    return mmdeploy


def cast_long(g, input, non_blocking):
    """``_cast_Long`` as torch <= 2.1 defined it: an ONNX ``Cast`` to int64."""
    from torch.onnx._internal.torchscript_exporter import _type_utils
    return g.op('Cast', input, to_i=_type_utils.JitScalarType.INT64.onnx_type())


def torchscript_exporter_by_default(export):
    """``torch.onnx.export`` with ``dynamo=False`` unless the caller says otherwise."""

    def export_with_torchscript(*args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return export(*args, **kwargs)

    export_with_torchscript.__wrapped__ = export
    return export_with_torchscript


_MISSING = object()


@contextlib.contextmanager
def patched_attribute(owner, name: str, value) -> Iterator[None]:
    """Set ``owner.name`` to ``value`` inside the block; afterwards restore it, or delete it
    again if it did not exist."""
    original = owner.__dict__.get(name, _MISSING) if hasattr(owner, '__dict__') else _MISSING
    setattr(owner, name, value)
    try:
        yield
    finally:
        if original is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


@contextlib.contextmanager
def mmdeploy_torch_compat() -> Iterator[None]:
    """Patch torch for mmdeploy 1.3.1 inside the block (the module docstring lists why)."""
    import torch.onnx.symbolic_opset9 as opset9
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched_attribute(
            torch.onnx, 'export', torchscript_exporter_by_default(torch.onnx.export)))
        if not hasattr(opset9, '_cast_Long'):
            stack.enter_context(patched_attribute(opset9, '_cast_Long', cast_long))
        yield


def torch_onnx_state() -> dict:
    """The attributes :func:`mmdeploy_torch_compat` may touch, for checking it restored them
    (an attribute that does not exist reads as None)."""
    import torch.onnx.symbolic_opset9 as opset9
    return {'torch.onnx.export': torch.onnx.__dict__.get('export'),
            'torch.onnx.symbolic_opset9._cast_Long': opset9.__dict__.get('_cast_Long')}
