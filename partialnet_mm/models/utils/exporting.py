"""Whether the code is running under an exporter or tracer."""
import torch


def is_exporting() -> bool:
    """True while a model is traced, scripted, compiled or exported to ONNX.

    Layers then compute shape-dependent values inside the graph (no Python-side caches) and
    prefer concatenation over writes into slices of a preallocated tensor.
    """
    return (torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())
