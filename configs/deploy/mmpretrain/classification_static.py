# Classifiers (mmpretrain): the graph outputs the class scores (softmax), one row per image.
_base_ = ['../_base_/onnx_config.py']

codebase_config = dict(type='mmpretrain', task='Classification', module=['partialnet_mm'])
