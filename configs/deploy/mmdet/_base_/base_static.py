# Detectors (mmdet), static input: the shape of the image given to tools/deploy.py after the
# model's test pipeline. `module` makes mmdeploy import partialnet_mm (the backbone's
# registry) even for a model config without custom_imports.
_base_ = ['../../_base_/onnx_config.py']

onnx_config = dict(output_names=['dets', 'labels'], input_shape=None)
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    module=['partialnet_mm'],
    # The NMS inside the graph. mmdeploy takes score_thr, max_per_img and nms_pre from the
    # model's test_cfg where it has them; score_threshold applies where it has none: the RPN
    # of a TensorRT export (onnxruntime exports propose as mmdet does, without a threshold:
    # partialnet_mm/deploy/mmdet_rewriters.py).
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
    ))
