"""Errors that the CLI turns into one clear line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input from the user (config, file, device, model, broker): no traceback, exit 2."""


class ConfigError(UserError):
    """A config key is unknown or its value is invalid; the message names the key."""


class ModelError(UserError):
    """A model file is missing, corrupt, has the wrong sha256, or the runtime cannot load it."""


class AudioError(UserError):
    """An audio file or device cannot be opened or decoded."""
