"""Verify vzdump archives in one streaming pass, and remember the results.

``check`` reads one archive (compression layer, VMA or tar structure, name/time, SHA-256), ``store`` keeps
each result bound to the bytes it checked (SQLite, one file per cluster), ``storages`` finds storages,
volids and the nodes' zones, ``run`` verifies many archives.

Standard library only (plus ``vzkeep.pve``'s stdlib-only modules; zstd is decoded in process through the
node's libzstd when it loads, else by its ``zstd`` binary): this runs on PVE nodes and NAS mounts.
"""

from __future__ import annotations

from vzkeep.verify.check import CHECKER_VERSION, TIME_NOT_CHECKED, VerifyResult, verify_archive
from vzkeep.verify.run import Target, verify_many, verify_paths, verify_targets
from vzkeep.verify.storages import (
    DEFAULT_STORAGE_CFG,
    ClusterView,
    Located,
    Place,
    Storage,
    StorageConfigError,
    cluster_results_path,
    find_archives,
    load_storages,
    parse_storage_cfg,
    volids_for,
)
from vzkeep.verify.store import (
    DEFAULT_STATE_DIR,
    STATE_DIR_ENV,
    ResultStore,
    StoreError,
    default_results_path,
    load_results,
    results_by_volid,
    store_stamp,
)

__all__ = [
    "CHECKER_VERSION", "DEFAULT_STATE_DIR", "DEFAULT_STORAGE_CFG", "STATE_DIR_ENV", "TIME_NOT_CHECKED",
    "ClusterView", "Located", "Place", "ResultStore", "Storage", "StorageConfigError", "StoreError", "Target",
    "VerifyResult", "cluster_results_path", "default_results_path", "find_archives", "load_results", "load_storages",
    "parse_storage_cfg", "results_by_volid", "store_stamp", "verify_archive", "verify_many", "verify_paths",
    "verify_targets", "volids_for",
]
