"""Errors a user can act on. Scripts print their message and exit non-zero, without a traceback.

Each message names the file, key, value or step at fault.
"""

class ConfigError(ValueError):
    """A config value is out of range; the message names the full key and the allowed values.
    (`centernet.config` raises it; it is a `ValueError`, as OmegaConf's own checks are.)"""


class CenterNetError(Exception):
    """Base class of the errors the command-line scripts report as a one-line cause."""


class DataError(CenterNetError):
    """A dataset, split or input file is missing or malformed."""


class CheckpointError(CenterNetError):
    """A checkpoint is missing, or does not match the model it should be loaded into."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint's files are missing, truncated or corrupt; the message names the file."""


class NonFiniteLossError(CenterNetError):
    """Training produced a non-finite loss and `train.on_nonfinite=stop`."""


USER_ERRORS = (CenterNetError, ConfigError)
