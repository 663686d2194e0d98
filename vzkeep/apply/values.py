"""Property values as a provider receives them, and compared as Pulumi compares them.

The Python SDK sends numbers as floats (``vmId: 303.0``), secrets wrapped in an envelope, assets as
objects and, during a preview, unknowns for values only known after an apply. A provider sees the
secret's value, whole numbers and, for an asset, its content; two inputs are "the same" when they
are equal that way (Pulumi's diff hashes an asset's content).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pulumi
from pulumi.output import Unknown

from vzkeep.preview import SECRET_SIG_KEY, SECRET_SIG_VALUE, is_secret


class _UnknownMarker:
    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _UnknownMarker()  # an input known only during the apply (a preview's ``pulumi.output.Unknown``)


def plain(value: Any) -> Any:
    """The value a provider gets: secrets opened, whole floats as ints, assets as content records."""
    if is_secret(value):
        return plain(value.get("value"))
    if isinstance(value, Unknown):
        return UNKNOWN
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return asset_record(value)
    return value


def has_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def secret_keys(inputs: dict[str, Any]) -> set[str]:
    """The top-level inputs that the program passed as secrets."""
    return {key for key, value in inputs.items() if _holds_secret(value)}


def _holds_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def as_secret(value: Any) -> dict[str, Any]:
    return {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": value}


def asset_record(asset: pulumi.Asset | pulumi.Archive) -> dict[str, Any]:
    """An asset as JSON: what it is and a digest of its content (a changed file is a changed input)."""
    if isinstance(asset, pulumi.StringAsset):
        return {"asset": "string", "text": asset.text}
    if isinstance(asset, pulumi.FileAsset):
        path = Path(str(asset.path))
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        return {"asset": "file", "path": str(path), "sha256": digest}
    if isinstance(asset, pulumi.FileArchive):
        return {"asset": "archive", "path": str(asset.path), "sha256": _tree_digest(Path(str(asset.path)))}
    if isinstance(asset, pulumi.RemoteAsset | pulumi.RemoteArchive):
        return {"asset": "remote", "uri": str(asset.uri)}
    return {"asset": type(asset).__name__}


def _tree_digest(root: Path) -> str | None:
    if not root.exists():
        return None
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(root) if path != root else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
