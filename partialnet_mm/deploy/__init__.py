"""Deployment: folded checkpoints and ONNX export."""
from .checkpoint import fold_checkpoint
from .onnx import export_onnx

__all__ = ['fold_checkpoint', 'export_onnx']
