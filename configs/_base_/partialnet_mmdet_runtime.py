# What every PartialNet detection config shares, on top of mmdet's default runtime: our
# package and the project's hooks. Family bases list this file instead of mmdet's
# default_runtime.py; the backbone is in ./models/, the optimizer in ./schedules/.
_base_ = ['mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

# checkpoints written atomically (a crash or a full disk never breaks the last good one)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
# resumed runs draw the same random numbers as an uninterrupted one; a NaN/inf loss stops
# training with a clear message before anything broken is saved
custom_hooks = [dict(type='RandomStateHook'), dict(type='NonFiniteLossHook')]
