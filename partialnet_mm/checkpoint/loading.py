"""Reading checkpoint files safely, finding the state dict inside, naming what does not fit."""
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, Optional

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why and what to do."""


# ---------------------------------------------------------------------------- state dicts
def strip_wrappers(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop a prefix that every key carries (PyTorch-Lightning ``model.``, DDP ``module.``)."""
    for prefix in ('model.', 'module.'):
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
    return state_dict


def unwrap_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: plain, ``state_dict``/``model`` wrapped."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        inner = checkpoint.get(key)
        if isinstance(inner, dict) and inner and all(
                isinstance(v, torch.Tensor) for v in inner.values()):
            return strip_wrappers(inner)
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f'no state dict found in the checkpoint (top-level keys: {sorted(checkpoint)[:10]})')
    others = sorted(k for k in checkpoint if k not in tensors)
    if others:
        raise CheckpointError(f'checkpoint mixes tensors with other entries {others[:10]}; '
                              f'cannot tell which is the state dict')
    return strip_wrappers(OrderedDict(checkpoint))


def describe_mismatch(state_dict: Dict[str, torch.Tensor], expected: Dict[str, torch.Size],
                      what: str, target: str, missing: Iterable[str] = ()) -> str:
    """A message naming every mismatched shape, unexpected key and ``missing`` key."""
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k])}'
                  for k, v in state_dict.items() if k in expected and v.shape != expected[k]]
    unexpected = sorted(k for k in state_dict if k not in expected)
    missing = sorted(missing)
    problems = []
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatches: ' + '; '.join(mismatched[:8]))
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys: {unexpected[:8]}')
    if missing:
        problems.append(f'{len(missing)} missing keys: {missing[:8]}')
    return f'{what} does not fit {target}: ' + ' | '.join(problems)


# ---------------------------------------------------------------------------- loading files
class _InertObject:
    """Stands in for a pickled object whose class is not allow-listed; never runs its code.

    It only records what the pickle gives it: constructor arguments, state, and the items or
    elements pickle adds to dict and list subclasses.
    """

    def __new__(cls, *args, **kwargs):  # pickle's NEWOBJ calls __new__ without __init__
        obj = super().__new__(cls)
        obj.args, obj.items, obj.elements = args, {}, []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.elements.append(value)

    def extend(self, values):
        self.elements.extend(values)


def _inert_pickle_module(allowed: dict, replaced: set):

    class InertUnpickler(pickle.Unpickler):

        def find_class(self, module, name):
            obj = allowed.get(f'{module}.{name}')
            if obj is not None:
                return obj
            replaced.add(f'{module}.{name}')
            return type(name, (_InertObject, ), {'__module__': f'inert.{module}'})

    class Module:
        Unpickler = InertUnpickler
        load = pickle.load
        __name__ = 'partialnet_inert_pickle'

    return Module


# how a file that torch.load cannot read was most likely damaged, and what brings it back
DAMAGED_HELP = ('an interrupted download or copy, or a disk that filled up while it was '
                'written. Download or copy it again (its size should match the source\'s); '
                'for a checkpoint of your own training run, resume from an earlier one '
                '(--resume without a path skips incomplete files)')


def unreadable_reason(path: str, err: Exception) -> Optional[str]:
    """Why ``torch.load`` could not read ``path`` if the file itself is the cause: empty, cut
    short, or not a PyTorch checkpoint at all; None when the file looks whole (``err`` is then
    about its content, e.g. a refused object). The message names the file, the likely cause
    and the fix, and quotes torch's own words."""
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError:
        return None
    said = f'(torch: "{_first_sentence(err)}")'
    if size == 0:
        return f'{path} is empty (0 bytes) {said}: most likely {DAMAGED_HELP}.'
    if head.startswith(b'PK'):  # a zip archive: torch.save's format since torch 1.6
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return (f'{path} is cut short ({size} bytes; its zip directory, written last, is '
                    f'missing) {said}: most likely {DAMAGED_HELP}.')
        if not any(name.endswith('data.pkl') for name in names):
            return (f'{path} is a zip archive but not a PyTorch checkpoint (no data.pkl among '
                    f'{names[:5]}) {said}; point to the .pth file itself.')
        return None
    if head[:1] != b'\x80':  # every pickle torch writes starts with the PROTO opcode
        return (f'{path} is not a PyTorch checkpoint: it starts with {head!r} {said}. A '
                f'failed download often saves an HTML error page or a login page under the '
                f'checkpoint\'s name; check the file (e.g. `head -c 200 {path}`), the path '
                f'and the URL, and download it again.')
    if isinstance(err, EOFError):  # the legacy (non-zip) format, cut short
        return f'{path} is cut short ({size} bytes) {said}: most likely {DAMAGED_HELP}.'
    return None


def load_checkpoint_file(path: str, map_location='cpu', allow_inert: bool = False):
    """Load a checkpoint file with ``weights_only=True``; its failures name the file and the fix.

    A damaged or foreign file (:func:`unreadable_reason`: empty, truncated, not a checkpoint)
    and a refused object (:func:`refusal_reason`) raise :class:`CheckpointError` instead of
    torch's bare ``EOFError``, "PytorchStreamReader failed reading zip archive" or "Weights
    only load failed". Other errors (e.g. a ``map_location`` device that does not exist) pass.

    Args:
        path: Local file.
        map_location: As for ``torch.load``.
        allow_inert: If weights-only loading meets a pickled object outside the allow-list
            (a PyTorch-Lightning checkpoint's hyper-parameters, say), load again with every
            such object replaced by an inert stand-in: its class is never imported and none
            of its code runs; a warning names what was replaced. Only tensors are used.

    Raises:
        CheckpointError: the file is damaged or not a checkpoint (the message says which and
        what to do), or it holds objects outside the allow-list and ``allow_inert`` is False
        (the message names them).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = unreadable_reason(path, err)
        if reason or not allow_inert:
            raise CheckpointError(reason or refusal_reason(path, err)) from None
    except (RuntimeError, EOFError) as err:
        reason = unreadable_reason(path, err)
        if reason is None:
            raise
        raise CheckpointError(reason) from None
    from torch._weights_only_unpickler import _get_allowed_globals
    replaced: set = set()
    module = _inert_pickle_module(_get_allowed_globals(), replaced)
    ckpt = torch.load(path, map_location=map_location, weights_only=False,
                      pickle_module=module)
    warnings.warn(f'{path}: replaced non-tensor objects by inert stand-ins (their code was '
                  f'not run): {sorted(replaced)}')
    return ckpt


def refusal_reason(path: str, err: Exception) -> str:
    """Why a weights-only load of ``path`` was refused, and what to do."""
    return (f'refusing to load {path}: it contains pickled Python objects outside the '
            f'weights-only allow-list, which could run arbitrary code when loaded '
            f'({_first_line(err)}). Nothing from it was executed. Load only checkpoints you '
            f"trust; re-save a trusted one's tensors with torch.save(ckpt['state_dict'], path).")


def _first_sentence(err: Exception) -> str:
    """The first sentence of torch's message (the rest is advice that does not apply)."""
    line = _first_line(err)
    sentence = line.split('. ')[0]
    return sentence if len(sentence) >= 20 else line


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    unsupported = [t for t in text if 'Unsupported global' in t or 'GLOBAL' in t]
    return (unsupported or text or [type(err).__name__])[0].strip()
