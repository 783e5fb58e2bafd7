"""Errors a user can act on. The CLI prints any of these as one line and exits non-zero."""


class MechlistopsError(Exception):
    """Base class: the message is the whole story, no traceback needed."""


class ConfigError(MechlistopsError):
    """A configuration that cannot work (sizes that do not divide, unknown names, ...)."""


class ParseError(MechlistopsError):
    """A malformed ListOps expression: unbalanced, unknown operator, value out of range."""


class CheckpointError(MechlistopsError):
    """A missing, truncated, foreign or mismatched run directory or weights file."""


EXIT_ERROR = 2  # bad input: the exit status of every command and of the scripts of analyses/


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its first), or its type's name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def error_text(exc: BaseException) -> str:
    """What a user is told of an error: a MechlistopsError's first line, or for an OSError (the
    file system said no) the file and the reason."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return first_line(exc)
