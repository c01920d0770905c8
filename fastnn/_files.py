"""The one atomic file writer: model checkpoints, generated kernel source, cache entries.

A file is written under a temporary name in its own directory, flushed to disk, then renamed
over the target with :func:`os.replace` (atomic on POSIX and Windows). A reader therefore sees
the old file or the whole new one, never half of one; two processes writing the same file at
once each rename a complete copy; an interrupted write (Ctrl-C, a full disk, a crash) leaves the
old file and removes its temporary.
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable, Optional, Union

__all__ = ["atomic_write"]

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, content: Union[bytes, Callable[[BinaryIO], None]],
                 mode: Optional[int] = None) -> None:
    """Write ``content`` (bytes, or a function that writes to a binary file object) to
    ``path`` atomically (see the module docstring). The directory must exist. ``mode``: the
    file's permissions (default: private to the user, 0o600)."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
