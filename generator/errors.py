"""Errors a user can fix. Front ends print them as one line (the CLI exits with status 2)."""


class VqclipError(Exception):
    """Base class: a problem with the user's input, files or environment, not a bug."""


class ConfigError(VqclipError, ValueError):
    """A setting is unknown, of the wrong type or out of range."""


class PromptError(ConfigError):
    """A prompt string does not follow the `text:weight:stop | ...` syntax."""


class WeightsError(VqclipError):
    """A checkpoint is missing, corrupt, unsafe to read or does not fit its architecture."""


class UnsafeCheckpointError(WeightsError):
    """A pickled checkpoint references code outside the allow-list; it is refused unread."""
