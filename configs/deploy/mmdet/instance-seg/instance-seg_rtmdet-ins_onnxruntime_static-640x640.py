_base_ = ['../_base_/base_instance-seg_static.py', '../../_base_/backends/onnxruntime.py']
# RTMDet-Ins, as mmdeploy's own config of this name: a static graph (the RTMDet configs pad
# every image to one square size; the shape is read from the model's test pipeline, 640 x 640
# for the COCO configs, so input_shape stays None) whose masks are pasted into the image
# inside the graph (mmdeploy's RTMDetInsHead rewrite supports only that).
codebase_config = dict(post_processing=dict(export_postprocess_mask=True))
