"""Small file-system helpers that more than one package needs."""

from __future__ import annotations

import contextlib
import os


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Persist a rename in ``folder``; best effort, since not every platform can open a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
