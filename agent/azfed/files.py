"""Writing a file so that readers and crashes see the old content or the new, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Temporaries end in this, so a folder's owner can sweep those a crash left behind.
TMP_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` by `data`, durably: after a crash it holds its old content or all of
    `data`. The file is created 0600 (mkstemp's mode) from its first byte, so a secret
    written here is never readable by anyone else, even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    # a rename is durable only once the folder's entry is on disk
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
