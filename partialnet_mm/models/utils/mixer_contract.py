"""What a spatial mixer of a PartialNet block provides: the one contract every mixer follows.

It lives here, beside the deploy contract, because three places outside the mixers rely on
it: the block (``residual``), the deploy walker (``has_inference_form``,
:mod:`.deploy`) and pretrained loading (``adapts_state_dict``, ``unexpected_key_hint``,
:mod:`partialnet_mm.checkpoint.pretrained`). The mixers themselves are in
:mod:`partialnet_mm.models.layers.mixers`.
"""
from typing import Optional

import torch.nn as nn


class SpatialMixer(nn.Module):
    """Base of every spatial mixer (``PartialNet(mixer_cfgs=...)``, the ``MIXERS`` registry).

    A mixer is built as ``cls(channels, conv_channels, **cfg)``: ``channels`` is the stage
    width, ``conv_channels`` that block's convolved width; the backbone fills in those of its
    settings (``norm_cfg``, ``num_heads``, ``deploy``, ...) that the signature names. Its
    ``forward`` returns a tensor of the input's shape. What it declares, and who reads it:

    Attributes:
        residual (bool): Whether ``forward`` returns ``x + mix(x)`` (the block then adds its
            MLP to that sum, as PAT_sf blocks do) or ``mix(x)`` (the block adds the MLP of it
            to ``x``, as PConv / PAT_ch blocks do). Read by the block. Defaults to False.
        has_inference_form (bool): Whether ``switch_to_deploy`` may fold the modules inside
            it. False keeps the whole subtree as it is (e.g. a mixer with a learned split,
            whose parts are used through its own computation: it must be exported first).
            Read by the deploy walker. Defaults to True.
        adapts_state_dict (bool): Whether its ``_load_from_state_dict`` takes tensors of other
            shapes than its own (e.g. plain weights embedded into a learned split);
            pretrained loading then leaves the keys under it to the mixer instead of refusing
            them. Defaults to False.
        naive (bool): Compute the authors' formulation instead of the faster one, where the
            two differ (:func:`~.naive.set_naive_forward` sets it on every module class that
            declares it, as for the other layers). Defaults to False.
    """

    residual: bool = False
    has_inference_form: bool = True
    adapts_state_dict: bool = False
    naive: bool = False

    def unexpected_key_hint(self, key: str) -> Optional[str]:
        """What a checkpoint key under this mixer that it does not have means (``key`` is
        relative to the mixer), or None. Pretrained loading adds it to its error."""
        return None
