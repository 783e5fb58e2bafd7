"""Atomic file writes: every file mechlistops writes goes through here.

A file is written to a temporary name in its directory, flushed, fsynced and renamed over its
target, so a process killed at any moment leaves the file either old or new, never half.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mechlistops.errors import MechlistopsError


class OutputError(MechlistopsError):
    """An output path that cannot be written: a directory where a file goes, no permission."""


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists() or parent.is_symlink():
            return parent
    return Path(".")


def check_writable_file(path: Path | str, what: str = "output file") -> Path:
    """`path` if a file can be written there (atomically); OutputError naming the problem
    otherwise. Creates nothing, so a command can check its outputs before any work."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; the {what} needs a file name")
    _check_parent(path, path.parent, what)
    return path


def check_writable_dir(path: Path | str, what: str = "output directory") -> Path:
    """`path` if it is, or can be made, a writable directory; OutputError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file; the {what} needs a directory")
    _check_parent(path, path, what)
    return path


def _check_parent(path: Path, folder: Path, what: str) -> None:
    base = _existing_ancestor(folder.absolute())
    if not base.is_dir():
        raise OutputError(f"{path}: {base} is not a directory, so the {what} cannot go there")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write in {base} (permission denied)")


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then fsync and rename over `path`."""
    path = check_writable_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write it ({exc.strerror})") from None
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600 files, and some writers (safetensors) make their own; run files
        # are meant to be shared
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # disk full, a path that turned into a directory, ...
            raise OutputError(f"{path}: cannot write it ({exc.strerror or exc})") from None
        raise


def write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")
