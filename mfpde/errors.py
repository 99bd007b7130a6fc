"""Errors shared by every layer (imports nothing of mfpde)."""


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range; the message
    is one line naming the field, the bad value and what is allowed."""


__all__ = ["ConfigError"]
