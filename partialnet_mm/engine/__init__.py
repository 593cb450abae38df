from .hooks import TrainCropScaleHook

__all__ = ['TrainCropScaleHook']
