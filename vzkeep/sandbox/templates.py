"""CT templates on a storage: ``<storage>:vztmpl/<file>`` in its ``template/cache`` directory.

pve-storage ``src/PVE/Storage/Plugin.pm`` (``get_subdir_files``: the ``vztmpl`` sub-directory is
``template/cache``, a volume's format is ``t<compression>``) and ``src/PVE/Storage.pm``
(``VZTMPL_EXT_RE_1``: ``.tar``, ``.tar.gz``, ``.tar.xz``, ``.tar.zst``, ``.tar.bz2``).
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from typing import Any

from vzkeep.sandbox.model import Storage
from vzkeep.sandbox.storages import storage_root

_VZTMPL_RE = re.compile(r"^[^/]+\.(?:(tar)(?!\.)|tar\.(gz|xz|zst|bz2))$", re.IGNORECASE)


def templates_of(storage: Storage, node: str) -> list[dict[str, Any]]:
    """The CT templates ``node`` sees on a storage that holds ``vztmpl``, as ``GET …/content`` lists them."""
    if "vztmpl" not in storage.content:
        return []
    directory = storage_root(storage, node) / "template" / "cache"
    found = []
    for path in sorted(directory.glob("*")) if directory.is_dir() else []:
        match = _VZTMPL_RE.match(path.name)
        if match and path.is_file():
            stat = path.stat()
            found.append({"volid": f"{storage.id}:vztmpl/{path.name}", "content": "vztmpl",
                          "format": "tar" if match.group(1) else f"t{match.group(2).lower()}",
                          "size": stat.st_size, "ctime": int(stat.st_mtime)})
    return found


def template_path(storage: Storage, node: str, volid: str) -> Path | None:
    """The file of ``<storage>:vztmpl/<name>`` as ``node`` sees it, or None when it is not there."""
    name = volid.partition(":")[2].removeprefix("vztmpl/")
    path = storage_root(storage, node) / "template" / "cache" / name
    return path if "/" not in name and _VZTMPL_RE.match(name) and path.is_file() else None


def write_ct_template(path: Path) -> None:
    """A small but real container template (a zstd tar with os-release), as `pveam download` leaves one."""
    import zstandard

    if path.exists():
        return
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
        info = tarfile.TarInfo("./etc/os-release")
        info.size, info.mtime = len(data), 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
