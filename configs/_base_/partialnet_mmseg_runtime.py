# What every PartialNet segmentation config shares, on top of mmseg's default runtime: our
# package and the project's hooks. Family bases list this file instead of mmseg's
# default_runtime.py; the backbone is in ./models/. (The family bases set the atomic
# checkpoint hook: mmseg's schedules define default_hooks, which a sibling base may not.)
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

# resumed runs draw the same random numbers as an uninterrupted one; a NaN/inf loss stops
# training with a clear message before anything broken is saved
custom_hooks = [dict(type='RandomStateHook'), dict(type='NonFiniteLossHook')]
