"""The schema layer: the data extracted from PVE's apidata.js, and the checks of pve-common
``src/PVE/JSONSchema.pm`` that run on it (expected texts transcribed from that file)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from vzkeep.sandbox.api import build_handlers, versions
from vzkeep.sandbox.api.formats import HashFormat
from vzkeep.sandbox.api.pve_schema import extract
from vzkeep.sandbox.api.validation import normalize_legacy_param_formats, print_property_string

APIDATA = """const apiSchema = [
   {"path": "/nodes", "text": "nodes", "leaf": 0, "children": [
      {"path": "/nodes/{node}", "text": "{node}", "leaf": 1, "info": {"PUT": {
         "name": "set", "method": "PUT", "description": "Prose that must not be kept.", "allowtoken": 1,
         "protected": 1, "proxyto": "node",
         "permissions": {"check": ["perm", "/nodes/{node}", ["Sys.Modify"]], "description": "More prose."},
         "parameters": {"additionalProperties": 0, "properties": {
            "node": {"type": "string", "format": "pve-node", "description": "The node.", "typetext": "<string>"},
            "description": {"type": "string", "optional": 1, "maxLength": 8192, "description": "Notes."},
            "prune": {"type": "string", "format": "prune-backups", "optional": 1,
                      "typetext": "[keep-all=<1|0>] [,keep-last=<N>]", "format_description": "prune"}}},
         "returns": {"type": "null"}}}}]}
]
;
"""


def test_extract_keeps_interface_facts_and_drops_prose(tmp_path: Path) -> None:
    source = tmp_path / "apidata.js"
    source.write_text(APIDATA)
    out = tmp_path / "out.json.gz"
    data = extract.build(source, "9.9.9", "0" * 40)
    extract.write(data, out)
    first = out.read_bytes()
    extract.write(extract.build(source, "9.9.9", "0" * 40), out)
    assert out.read_bytes() == first  # reproducible output
    method = json.loads(gzip.decompress(first))["methods"]["PUT /nodes/{node}"]
    props = method["parameters"]["properties"]
    assert set(props) == {"node", "description", "prune"}  # a parameter named "description" is data
    assert props["description"] == {"type": "string", "optional": 1, "maxLength": 8192}
    assert props["node"] == {"type": "string", "format": "pve-node"}  # "<string>" says nothing
    assert props["prune"]["typetext"] == "[keep-all=<1|0>] [,keep-last=<N>]"
    assert "format_description" not in props["prune"]
    assert method["permissions"] == {"check": ["perm", "/nodes/{node}", ["Sys.Modify"]]}
    assert (method["allowtoken"], method["protected"], method["proxyto"]) == (1, 1, "node")
    assert "Prose" not in first.decode("latin-1") and "Prose" not in gzip.decompress(first).decode()


@pytest.mark.parametrize("major", ["9", "8"])
def test_every_format_the_served_routes_name_is_registered(major: str) -> None:
    version = versions.get(major)
    served = [version.schema.methods[key] for key in build_handlers().routes]
    names: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            fmt = node.get("format")
            if isinstance(fmt, str):
                names.add(re.sub(r"-(list|opt)$", "", fmt) if fmt not in version.checker.formats.formats else fmt)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    for method in served:
        collect(method.parameters)
        collect(method.returns)
    missing = sorted(name for name in names if version.checker.formats.get(name) is None and name != "regex")
    assert not missing, f"undefined formats (PVE would die 'undefined format'): {missing}"


def test_indexed_properties_have_pves_ranges() -> None:
    put = versions.get("9").schema.get("PUT", "/nodes/{node}/qemu/{vmid}/config")
    nets = [k for k in put.properties if re.fullmatch(r"net\d+", k)]
    assert len(nets) == 32 and "net31" in nets and "net32" not in nets  # qemu-server $MAX_NETS
    assert "unused255" in put.properties and "scsi30" in put.properties and "scsi31" not in put.properties


@pytest.mark.parametrize(("major", "message"), [
    ("9", "missing property required by 'notes-template'"),
    ("8", "missing property - 'notes-template' requires this property"),
])
def test_requires_words_differ_between_versions(major: str, message: str) -> None:
    version = versions.get(major)
    schema = version.schema.get("POST", "/cluster/backup").parameters
    errors = version.checker.errors({"schedule": "daily", "all": "1", "notes-template": "x"}, schema)
    assert errors == {"storage": message}


@pytest.mark.parametrize(("value", "error"), [
    ("1", None), ("0", None), (True, None), (False, None),
    ("true", "type check ('boolean') failed - got 'true'"),  # only the CLI parses words (get_options)
    ("yes", "type check ('boolean') failed - got 'yes'"),
    (["1"], "type check ('boolean') failed - got ARRAY"),
])
def test_api_booleans_are_1_0_or_json_booleans(value: object, error: str | None) -> None:
    version = versions.get("9")
    schema = version.schema.get("POST", "/cluster/backup").parameters
    errors = version.checker.errors({"schedule": "daily", "all": value}, schema)
    assert errors.get("all") == error


@pytest.mark.parametrize(("value", "ok"), [("+5", True), ("-0", True), ("007", True), ("5.0", False), (5, True),
                                           ("1e3", False)])
def test_integers_as_perl_reads_them(value: object, ok: bool) -> None:
    version = versions.get("9")
    schema = version.schema.get("POST", "/cluster/backup").parameters
    errors = version.checker.errors({"schedule": "daily", "all": "1", "bwlimit": value}, schema)
    assert ("bwlimit" not in errors) == ok, errors


def test_repeated_list_parameters_are_joined_and_single_array_values_wrapped() -> None:
    schema = {"properties": {"vmid": {"type": "string", "format": "pve-vmid-list"},
                             "exclude-path": {"type": "array", "items": {"type": "string"}}}}
    params = normalize_legacy_param_formats({"vmid": ["100", "101"], "exclude-path": "/tmp"}, schema)
    assert params == {"vmid": "100,101", "exclude-path": ["/tmp"]}


def test_a_nic_is_parsed_and_printed_with_its_model_alias() -> None:
    version = versions.get("9")
    fmt = version.schema.get("PUT", "/nodes/{node}/qemu/{vmid}/config").properties["net0"]["format"]
    text = "bridge=vmbr0,virtio=BC:24:11:00:00:01,firewall=yes"
    parsed = version.checker.parse_property_string(HashFormat(fmt), text, "net0")
    assert parsed == {"bridge": "vmbr0", "model": "virtio", "macaddr": "BC:24:11:00:00:01", "firewall": 1}
    assert print_property_string(parsed, fmt) == "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1"


def test_a_second_error_on_one_path_is_joined_with_a_literal_backslash_n() -> None:
    # JSONSchema.pm add_error: join('\n', ...) in single quotes, so two characters, not a newline
    version = versions.get("9")
    schema = {"type": "object", "properties": {"a": {"type": "string", "requires": "b"},
                                               "c": {"type": "string", "requires": "b"}}}
    errors = version.checker.errors({"a": "x", "c": "y"}, schema)
    assert errors == {"b": "missing property required by 'a'\\nmissing property required by 'c'"}
