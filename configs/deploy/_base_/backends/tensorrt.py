# TensorRT builds an engine from end2end.onnx on a CUDA GPU (not tried on this project's
# CPU machines; docs/mmdeploy.md says what is prepared).
backend_config = dict(
    type='tensorrt', common_config=dict(fp16_mode=False, max_workspace_size=1 << 30))
