"""Replacing a file so that readers see the old content or the new one, never half of it.

Every file vzkeep writes that must survive a crash, and every file that holds a secret (API tokens,
keys, the sandbox's credentials, state exports), goes through :func:`write_atomic`:

1. the content goes to a temporary file in the same directory, created by ``mkstemp`` with a name
   no other writer uses and mode 0600 from its first instant (``O_CREAT|O_EXCL``: an old file's mode
   can never carry over, whatever the umask);
2. the file is fsynced, then given its final mode, then renamed over the target (``rename(2)`` is
   atomic within a directory);
3. the directory is fsynced, so that the rename itself survives a power loss.

``write_private`` is the same for a secret (0600 to the end). The sandbox's cluster file, rewritten on every
change, passes ``fsync=False``: its writes stay whole-or-absent for readers and after a kill (its
journal makes the whole change consistent), without paying two flushes each.

Standard library only: `vzkeep verify` imports it on PVE nodes, where nothing else is installed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600  # owner read/write: tokens, keys, credentials, state content
PUBLIC = 0o644


def write_atomic(
    path: str | os.PathLike[str], data: str | bytes, mode: int = PUBLIC, *, fsync: bool = True
) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8), atomically and durably.

    The temporary file is private (0600) until it has its content; it gets ``mode`` just before the
    rename, so a file holding a secret (``mode=PRIVATE``) is never readable by others, not even for
    an instant, and a public one never shows half its content. ``fsync=False`` skips both flushes to
    disk (the file's and the directory's): the rename still makes the file whole or absent for any
    reader and after a killed process; only a power loss could lose it (for state rewritten often).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_directory(path.parent)


def write_private(path: str | os.PathLike[str], data: str | bytes) -> None:
    """:func:`write_atomic` for a file holding a secret: mode 0600 from creation to the end."""
    write_atomic(path, data, mode=PRIVATE)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and platforms) refuse fsync on a directory; the rename stands
        pass
    finally:
        os.close(fd)
