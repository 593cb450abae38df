# Instance segmentation: the graph outputs each detection's 28 x 28 mask logits; mmdeploy's
# backend model pastes them into the image, as mmdet does (export_postprocess_mask=False).
_base_ = ['./base_static.py']

onnx_config = dict(output_names=['dets', 'labels', 'masks'])
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
