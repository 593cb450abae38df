"""What the tools do, as functions: train, test, convert checkpoints."""
from ..checkpoint import CheckpointError
from ..engine import CheckpointSaveError, NonFiniteLossError
from ..libraries import MissingLibraryError
from ..runner import DataError
from ..runner.tta import TTAConfigError
from .convert import convert_checkpoint_file
from .test import test
from .train import train

# Errors a tool reports as a one-line message (the cause and the fix) instead of a traceback.
USER_ERRORS = (DataError, CheckpointError, NonFiniteLossError, CheckpointSaveError,
               TTAConfigError, MissingLibraryError)

__all__ = ['USER_ERRORS', 'convert_checkpoint_file', 'test', 'train']
