# The IR settings every PartialNet deploy config starts from (mmdeploy's
# configs/_base_/onnx_config.py layout). Opset 17, not mmdeploy's default 11: the PAT_sf
# attention exports as scaled_dot_product_attention (ONNX symbolic from opset 14) and
# LayerNorm as one node (opset 17).
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=17,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=True)
