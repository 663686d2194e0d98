"""Replacing a file so that readers see the old content or the new one, never half of it.

Standard library only: `vzkeep verify` imports it on PVE nodes, where nothing else is installed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], text: str, mode: int = 0o644, fsync: bool = True) -> None:
    """Write `text` to a temp file in the same directory, fsync, then rename over `path`.

    The temp file is created 0600 (mkstemp) and gets `mode` before the rename, so a file holding a
    secret (mode 0600) is never readable by others, not even for an instant. `fsync=False` skips the
    flush to disk: the rename still makes the file whole or absent for any reader and after a killed
    process, only a power loss could leave it empty (for state that is rewritten often).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
