# Segmentors (mmseg): the graph ends in the per-pixel argmax (with_argmax), one label map.
_base_ = ['../_base_/onnx_config.py']

codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True,
                       module=['partialnet_mm'])
