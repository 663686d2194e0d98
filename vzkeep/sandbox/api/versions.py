"""The PVE versions the sandbox can be: 9 (default) and 8 (8.4). Everything that differs is here, as
data: which schema file, what ``/version`` reports, the built-in roles, the pve-common validation
dialect, and the few handler behaviours PVE changed between them. Handlers ask the table; there is
one code path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, cached_property

from vzkeep.sandbox.api import pve_schema
from vzkeep.sandbox.api.access.privileges import PRIVGROUPS, create_roles, valid_privileges
from vzkeep.sandbox.api.formats import (
    FORMATS,
    INLINE_ALIASES,
    FormatError,
    HashFormat,
    Registry,
    parse_size,
    perl_match,
    privilege_format,
)
from vzkeep.sandbox.api.validation import Checker, Dialect

DEFAULT_VERSION = "9"


@dataclass(frozen=True)
class PveVersion:
    """One PVE release as the sandbox plays it."""

    major: str
    schema_version: str  # the pve-docs apidata.js the schema data comes from
    version: str  # pve-manager version (GET /version "version")
    release: str
    repoid: str  # pve-manager commit the release was built from (16 hex digits, as pveversion prints)
    kernel: str  # the default kernel of the release, for /nodes/{node}/status
    dialect: Dialect = field(default_factory=Dialect)
    # pve-manager PVE/API2/Pool.pm create_pool (7eadbed6, in 9.x): "pool name must start with a letter"
    pool_name_starts_with_letter: bool = True
    # pve-container src/PVE/API2/LXC.pm create_vm (9.x): restoring a privileged container needs Sys.Modify on /
    privileged_ct_restore_needs_sys_modify: bool = True
    # pve-common JSONSchema.pm parse_id (d43c573, in 9.x): a separate message for one-character IDs
    short_id_message: bool = True
    # pve-common JSONSchema.pm parse_size (b6bfb5f, in 9.x): sizes may end in KiB/MiB/GiB/TiB
    size_ib_suffix: bool = True
    # pve-manager PVE/VZDump.pm 8.x $parse_prune_backups_maxfiles: maxfiles conflicts with and becomes
    # prune-backups (9.x: maxfiles is still in the schema but no longer read)
    vzdump_maxfiles_to_prune_backups: bool = False

    @property
    def schema(self) -> pve_schema.ApiSchema:
        return pve_schema.load(self.schema_version)

    @cached_property
    def roles(self) -> dict[str, frozenset[str]]:
        """The built-in (special) roles, privilege sets by name."""
        return create_roles(PRIVGROUPS[self.major])

    @cached_property
    def privileges(self) -> frozenset[str]:
        return valid_privileges(PRIVGROUPS[self.major])

    @cached_property
    def checker(self) -> Checker:
        return Checker(self._formats(), self.dialect)

    def version_info(self) -> dict[str, str]:
        """``GET /version`` (pve-manager PVE/API2/Version.pm)."""
        return {"version": self.version, "release": self.release, "repoid": self.repoid}

    def _formats(self) -> Registry:
        registry = Registry(dict(FORMATS.formats))
        registry.formats["pve-priv"] = privilege_format(self.privileges)
        for name, (method, prop) in INLINE_ALIASES.items():
            registry.formats[name] = HashFormat(pve_schema.inline_format(self.schema, method, prop),
                                                source=f"the schema's inline format of {method} {prop}")
        if not self.short_id_message:
            registry.formats["pve-storage-id"] = _parse_storage_id_8
        if not self.size_ib_suffix:
            registry.formats["disk-size"] = _verify_disk_size_8
        return registry


def _parse_storage_id_8(value: str) -> str:
    # pve-common 8.3.1 src/PVE/JSONSchema.pm parse_id: no length check of its own
    if not perl_match(r"^[a-z][a-z0-9\-\_\.]*[a-z0-9]$", value, re.IGNORECASE):
        raise FormatError(f"storage ID '{value}' contains illegal characters\n")
    return value


def _verify_disk_size_8(value: str) -> str:
    # pve-common 8.3.1 src/PVE/JSONSchema.pm parse_size: only K, M, G, T
    if not perl_match(r"^(\d+(\.\d+)?)([KMGT])?$", value) or parse_size(value) is None:
        raise FormatError(f"value does not look like a valid disk size: {value}\n")
    return value


VERSIONS: dict[str, PveVersion] = {
    "9": PveVersion(
        major="9", schema_version="9.1.3", version="9.1.3", release="9.1",
        repoid="5829c814947b3364",  # pve-manager "bump version to 9.1.3" (5829c814947b3364bd6fd2149bbb2b9d39e2f321)
        kernel="6.17.2-1-pve",
    ),
    "8": PveVersion(
        major="8", schema_version="8.4.0", version="8.4.0", release="8.4",
        repoid="ec58e45e1bcdf2ac",  # pve-manager "bump version to 8.4.0" (ec58e45e1bcdf2ac1a005082133cdaaad81cc52f)
        kernel="6.8.12-9-pve",
        dialect=Dialect(requires_message="missing property - '{key}' requires this property", alias_remap=False,
                        boolean_default_key=False),
        pool_name_starts_with_letter=False, privileged_ct_restore_needs_sys_modify=False, short_id_message=False,
        size_ib_suffix=False, vzdump_maxfiles_to_prune_backups=True,
    ),
}


class UnknownVersion(ValueError):
    """A ``--pve-version`` or seed ``pve_version`` the sandbox cannot play."""


@cache
def get(major: str | int | None) -> PveVersion:
    """The version for ``9``/``8`` (also ``9.1``, ``8.4``…: the major part decides); None = the default."""
    text = str(major if major is not None else DEFAULT_VERSION).strip()
    key = text.split(".", 1)[0]
    if key not in VERSIONS or (text != key and not any(v.version.startswith(text) for v in VERSIONS.values())):
        plays = ", ".join(f"{major} ({VERSIONS[major].version})" for major in sorted(VERSIONS, reverse=True))
        raise UnknownVersion(f"unknown PVE version '{text}'; the sandbox plays {plays}")
    return VERSIONS[key]
