"""vzkeep.exporter.json_items: PVE's ``{"data": [...]}`` read a piece at a time gives what ``json.loads`` gives,
wherever the pieces are cut (tiny pieces here, and notes that contain the cut mark), and a body that is not a
list of items is refused as ``json.loads`` would refuse it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vzkeep.exporter import json_items

ITEMS: list[Any] = [
    {"volid": "backup-prod:backup/vzdump-qemu-100-2026_11_18-02_00_05.vma.zst", "vmid": 100, "ctime": 1795000000,
     "size": 123456789, "notes": "web (prod) — déjà vu 🐘", "verification": {"state": "ok", "upid": "UPID:x"}},
    {"volid": "backup-prod:backup/vzdump-lxc-101-2026_11_18-02_00_09.tar.zst", "vmid": 101, "ctime": 1795000009,
     "size": 0, "notes": 'a "quoted" ]},{ tricky },{"x": note', "protected": 1, "list": [{"a": 1}, {"b": 2}]},
    {"volid": "backup-prod:iso/x.iso", "size": 5},
]

CASES = [
    ("PVE's layout", json.dumps({"data": ITEMS}, separators=(",", ":"), ensure_ascii=False), ITEMS),
    ("escaped, indented (parsed whole)", json.dumps({"data": ITEMS}, indent=1), ITEMS),
    ("escaped, compact", json.dumps({"data": ITEMS}, separators=(",", ":")), ITEMS),
    ("an empty list", '{"data":[]}', []),
    ("numbers and literals", '{"data":[12345678901234,null,true,1.5e3,"x"]}',
     [12345678901234, None, True, 1500.0, "x"]),
    ("another key first (parsed whole)", json.dumps({"total": 3, "data": ITEMS}), ITEMS),
]


@pytest.mark.parametrize("piece_bytes", [1, 7, 64, 1 << 20], ids=lambda n: f"pieces of {n} bytes")
@pytest.mark.parametrize(("description", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_items_are_what_json_loads_gives(monkeypatch: pytest.MonkeyPatch, piece_bytes: int, description: str,
                                         text: str, expected: list[Any]) -> None:
    monkeypatch.setattr(json_items, "PIECE_BYTES", piece_bytes)
    body = text.encode()
    assert list(json_items.data_items(body, "x")) == expected == json.loads(body)["data"]


BAD = [
    ("data is an object", b'{"data":{"a":1}}', "storage backup-prod content: expected a list, got dict"),
    ("no data at all", b'{"errors":{"storage":"bad"}}', "expected a list, got NoneType"),
    ("cut inside an item", b'{"data":[{"volid":"a","vmid":1},{"volid":"b",', "Expecting"),
    ("cut after an item", b'{"data":[{"volid":"a"}', "Expecting"),
    ("garbage between items", b'{"data":[{"a":1},{"b":2};{"c":3}]}', "Expecting"),
]


@pytest.mark.parametrize("piece_bytes", [1, 1 << 20], ids=lambda n: f"pieces of {n} bytes")
@pytest.mark.parametrize(("description", "body", "message"), BAD, ids=[c[0] for c in BAD])
def test_a_body_that_is_not_a_list_is_refused(monkeypatch: pytest.MonkeyPatch, piece_bytes: int, description: str,
                                              body: bytes, message: str) -> None:
    monkeypatch.setattr(json_items, "PIECE_BYTES", piece_bytes)
    with pytest.raises(ValueError, match=message):
        list(json_items.data_items(body, "storage backup-prod content"))
