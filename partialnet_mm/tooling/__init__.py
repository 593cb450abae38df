"""The project's own tooling: how the plugin is measured, checked and documented.

Nothing here is needed to train, test or deploy a model, and ``import partialnet_mm`` loads
none of it (``tests/test_lean_runtime.py`` checks both). The runtime never imports it; its
modules import the runtime:

* :mod:`.benchmark`: speed and memory of the forms of a model (the authors' formulation,
  folded, the training path, activation checkpointing) and of the authors' own code;
* :mod:`.authors_code`: a clone of the authors' implementation, as a benchmark peer;
* :mod:`.peers`: whole detectors and segmentors with PartialNet against the backbones users
  pick instead (FasterNet, ResNet); :mod:`.plot` draws their table;
* :mod:`.model_index`: writes ``model-index.yml`` and ``configs/metafile.yml``;
* :mod:`.learning_benchmark`: trains each demo config and compares its metrics with targets;
* :mod:`.dpconv_benchmark`: DPConv end to end (train, export, time);
* :mod:`.demo_data`: the synthetic COCO-, ADE20K- and ImageNet-layout demo sets;
* :mod:`.startup`: a COCO-scale data set and the start-up cost of a training run on it;
* :mod:`.int8_benchmark`: latency of PyTorch folded, onnxruntime fp32 and INT8 exports.

What stays in the runtime, although tools of this kind use it too:
:mod:`partialnet_mm.analysis` (models by arch or config, ``--fuse``, FLOPs for
``tools/get_flops.py``, :func:`~partialnet_mm.analysis.time_interleaved` and the machine
description, which the deploy check of ``tools/deploy.py`` reports) and the dataset checks
of :mod:`partialnet_mm.runner`, which name ``tools/make_demo_data.py`` for a broken demo set.

The package is imported module by module (``from partialnet_mm.tooling import peers``); this
file imports nothing, so one tool does not load the others' dependencies (matplotlib, timm,
mmdet for the start-up set).
"""
