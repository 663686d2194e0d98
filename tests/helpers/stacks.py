"""Helpers to build stack files for tests: start from a shipped one and change a few keys."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("prod", "lab", "monitoring")


def shipped(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())


def write_stack(directory: Path, name: str, document: dict[str, Any]) -> Path:
    path = directory / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def mutated(name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """A shipped stack document with `changes` applied: {"vzkeep:backup.retention.keepDaily": -1}.

    A value of `DELETE` removes the key.
    """
    document = copy.deepcopy(shipped(name))
    for dotted, value in changes.items():
        top, *rest = dotted.split(".")
        target = document["config"]
        keys = [top, *rest]
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        if value is DELETE:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = value
    return document


DELETE = object()
