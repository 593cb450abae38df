_base_ = ['../_base_/base_tensorrt_dynamic-320x320-1344x1344.py']
