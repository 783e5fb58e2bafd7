"""Errors a user can act on. The CLI prints any of these as one line and exits non-zero."""


class MechlistopsError(Exception):
    """Base class: the message is the whole story, no traceback needed."""


class ConfigError(MechlistopsError):
    """A configuration that cannot work (sizes that do not divide, unknown names, ...)."""


class ParseError(MechlistopsError):
    """A malformed ListOps expression: unbalanced, unknown operator, value out of range."""


class CheckpointError(MechlistopsError):
    """A missing, truncated, foreign or mismatched run directory or weights file."""
