"""UPIDs exactly as pve-common UPID.pm writes and reads them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vzkeep.pve.upid import Upid, decode_upid, encode_upid

REFERENCE_EXAMPLE = "UPID:pve1:0001A2B3:00C4D5E6:65A1B2C3:vzdump:100:root@pam:"


def test_reference_example_round_trips() -> None:
    upid = decode_upid(REFERENCE_EXAMPLE)
    assert upid == Upid("pve1", 0x1A2B3, 0xC4D5E6, 0x65A1B2C3, "vzdump", "100", "root@pam")
    assert upid.text == REFERENCE_EXAMPLE


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("multi-guest vzdump has an empty id", "UPID:pve1:00001234:00C4D5E6:65A1B2C3:vzdump::root@pam:",
         ("pve1", "", "root@pam")),
        ("api token user", "UPID:pve-2:00001234:00C4D5E6:65A1B2C3:imgdel:100@local:vzkeep@pve!ci:",
         ("pve-2", "100@local", "vzkeep@pve!ci")),
        ("nine hex digits of pstart", "UPID:n:00001234:1C4D5E6FF:65A1B2C3:qmrestore:101:root@pam:",
         ("n", "101", "root@pam")),
        ("lower-case hex", "UPID:pve1:0001a2b3:00c4d5e6:65a1b2c3:vzdump:100:root@pam:", ("pve1", "100", "root@pam")),
    ],
)
def test_decode_accepts(name: str, text: str, expected: tuple[str, str, str]) -> None:
    upid = decode_upid(text)
    assert (upid.node, upid.id, upid.user) == expected, name


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("no trailing colon", "UPID:pve1:0001A2B3:00C4D5E6:65A1B2C3:vzdump:100:root@pam"),
        ("node starts with a dash", "UPID:-pve:0001A2B3:00C4D5E6:65A1B2C3:vzdump:100:root@pam:"),
        ("node ends with a dash", "UPID:pve-:0001A2B3:00C4D5E6:65A1B2C3:vzdump:100:root@pam:"),
        ("pid with 7 digits", "UPID:pve1:001A2B3:00C4D5E6:65A1B2C3:vzdump:100:root@pam:"),
        ("pstart with 10 digits", "UPID:pve1:0001A2B3:00C4D5E6AA:65A1B2C3:vzdump:100:root@pam:"),
        ("slash in id", "UPID:pve1:0001A2B3:00C4D5E6:65A1B2C3:vzdump:a/b:root@pam:"),
        ("empty type", "UPID:pve1:0001A2B3:00C4D5E6:65A1B2C3::100:root@pam:"),
        ("empty user", "UPID:pve1:0001A2B3:00C4D5E6:65A1B2C3:vzdump:100::"),
        ("not a UPID", "hello"),
    ],
)
def test_decode_rejects_with_pve_text(name: str, text: str) -> None:
    with pytest.raises(ValueError, match="unable to parse worker upid"):
        decode_upid(text)


@pytest.mark.parametrize(
    ("starttime", "subdir"),
    [(0x65A1B2C3, "3"), (0x6926430F, "F"), (0x10, "0")],
)
def test_log_subdir_is_last_hex_digit_of_starttime(starttime: int, subdir: str) -> None:
    assert Upid("pve1", 1, 2, starttime, "vzdump", "", "root@pam").log_subdir == subdir


@pytest.mark.parametrize(
    ("user", "split"),
    [("root@pam", ("root@pam", None)), ("vzkeep@pve!exporter", ("vzkeep@pve", "exporter"))],
)
def test_token_users_split_into_user_and_tokenid(user: str, split: tuple[str, str | None]) -> None:
    assert Upid("pve1", 1, 2, 3, "vzdump", "", user).user_and_token() == split


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("colon in id", {"id": "a:b"}),
        ("space in user", {"user": "root @pam"}),
        ("bad node", {"node": "pve_1"}),
        ("pid too large", {"pid": 1 << 33}),
    ],
)
def test_encode_refuses_what_decode_would_reject(name: str, kwargs: dict) -> None:
    args = {"node": "pve1", "pid": 1, "pstart": 2, "starttime": 3, "type": "vzdump", "id": "", "user": "root@pam"}
    args.update(kwargs)
    with pytest.raises(ValueError):
        encode_upid(**args)


_node = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9\-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_field = st.from_regex(r"[A-Za-z0-9@!.\-_]{1,12}", fullmatch=True)


@given(
    node=_node,
    pid=st.integers(0, 0xFFFFFFFF),
    pstart=st.integers(0, 0xFFFFFFFFF),
    starttime=st.integers(0, 0xFFFFFFFF),
    type_=_field,
    id_=st.one_of(st.just(""), _field),
    user=_field,
)
def test_encode_decode_round_trip(node: str, pid: int, pstart: int, starttime: int, type_: str, id_: str,
                                  user: str) -> None:
    text = encode_upid(node, pid, pstart, starttime, type_, id_, user)
    assert decode_upid(text) == Upid(node, pid, pstart, starttime, type_, id_, user)
    assert text.startswith(f"UPID:{node}:{pid:08X}:") and text.endswith(f":{user}:")
