"""Regenerate ``pve-<version>.json.gz`` from a PVE ``apidata.js`` (pve-docs ``api-viewer/apidata.js``).

Usage::

    python -m vzkeep.sandbox.api.pve_schema.extract PATH/TO/apidata.js --version 9.1.3 \\
        --commit e5010dcea566a205770572cfbc5fe0af220d5077

Only the machine-checkable interface facts are kept (see README.md in this directory): paths, methods,
parameter and return schemas without their prose (``description``, ``verbose_description``, ``title``,
``format_description``), the permission checks, ``allowtoken``, ``protected``, ``proxyto``.
``typetext`` is kept only where it carries format information (a property string's syntax).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PROSE = frozenset({"description", "verbose_description", "title", "format_description", "links"})
METHOD_FACTS = ("allowtoken", "protected", "proxyto", "download_allowed", "expose_credentials")
# typetext values that only restate the type: they carry no format information.
PLAIN_TYPETEXT = frozenset({"<string>", "<integer>", "<number>", "<boolean>", "<1|0>", "<array>", "<object>"})


def load_apidata(text: str) -> list[dict[str, Any]]:
    """``const apiSchema = [ … ];`` → the array (the file is JSON inside a JS assignment)."""
    return json.loads(text[text.index("["):text.rindex("]") + 1])


# keys whose value maps names (parameters, property-string keys) to schemas: the names are data
NAMED_SCHEMAS = frozenset({"properties", "format"})


def strip_schema(node: Any) -> Any:
    """A JSON-schema fragment without prose; nested schemas (properties, items, formats) likewise."""
    if isinstance(node, list):
        return [strip_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in PROSE:
            continue
        if key == "typetext" and (value in PLAIN_TYPETEXT or not isinstance(node.get("format"), str)):
            continue
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: strip_schema(schema) for name, schema in value.items()}
        else:
            out[key] = strip_schema(value)
    return out


def strip_permissions(perm: dict[str, Any] | None) -> dict[str, Any] | None:
    if perm is None:
        return None
    return {k: v for k, v in perm.items() if k != "description"}


def extract(tree: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"<METHOD> <path>": {parameters, returns, permissions, …}}`` for every method in the tree."""
    methods: dict[str, Any] = {}

    def walk(nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            for method, info in sorted(node.get("info", {}).items()):
                entry: dict[str, Any] = {
                    "parameters": strip_schema(info.get("parameters") or {}),
                    "returns": strip_schema(info.get("returns") or {}),
                }
                perm = strip_permissions(info.get("permissions"))
                if perm is not None:
                    entry["permissions"] = perm
                entry.update({k: info[k] for k in METHOD_FACTS if k in info})
                methods[f"{method} {node['path']}"] = entry
            walk(node.get("children", []))

    walk(tree)
    return methods


def build(apidata: Path, version: str, commit: str) -> dict[str, Any]:
    return {
        "pve_version": version,
        "source": {"repository": "proxmox/pve-docs", "file": "api-viewer/apidata.js", "commit": commit,
                   "licence": "AGPL-3.0-or-later"},
        "methods": extract(load_apidata(apidata.read_text(encoding="utf-8"))),
    }


def write(data: dict[str, Any], out: Path) -> None:
    # mtime=0: the same input gives byte-identical output (reviewable, reproducible).
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    with open(out, "wb") as handle, gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("apidata", type=Path, help="path to a pve-docs api-viewer/apidata.js")
    parser.add_argument("--version", required=True, help="the PVE version the file documents, e.g. 9.1.3")
    parser.add_argument("--commit", required=True, help="the pve-docs commit the file was taken from")
    parser.add_argument("--out", type=Path, help="output file (default: pve-<version>.json.gz beside this script)")
    args = parser.parse_args(argv)
    out = args.out or HERE / f"pve-{args.version}.json.gz"
    data = build(args.apidata, args.version, args.commit)
    write(data, out)
    print(f"{out}: {len(data['methods'])} methods, {out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
