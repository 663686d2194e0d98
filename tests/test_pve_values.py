"""PVE's booleans and time zones, read one way everywhere (pve-common src/PVE/JSONSchema.pm)."""

from __future__ import annotations

import pytest

from vzkeep.pve.values import UnknownTimeZone, is_true, load_zone, parse_boolean
from vzkeep.sandbox.api.validation import parse_boolean as api_parse_boolean


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("on", True), ("Yes", True), ("TRUE", True), (True, True), (1, True),
    ("0", False), ("off", False), ("No", False), ("false", False), (False, False), (0, False),
    ("2", None), ("maybe", None), ("", None), ("y", None), (2, None), ("truefalse", None),
])
def test_parse_boolean_accepts_exactly_pves_words(value: object, expected: bool | None) -> None:
    assert parse_boolean(value) is expected


def test_a_zone_the_tz_database_knows_loads_and_another_is_named_in_the_error() -> None:
    assert load_zone("Europe/Paris").key == "Europe/Paris"
    with pytest.raises(UnknownTimeZone, match=r"unknown time zone 'Mars/Olympus' \(use an IANA name") as bad:
        load_zone("Mars/Olympus")
    assert isinstance(bad.value, ValueError) and bad.value.name == "Mars/Olympus"
    with pytest.raises(UnknownTimeZone):
        load_zone("../../etc/passwd")


@pytest.mark.parametrize(("value", "expected"), [("yes", True), (1, True), ("0", False), ("maybe", False), ("", False)])
def test_is_true_reads_a_word_that_is_not_pves_as_false_like_perl(value: object, expected: bool) -> None:
    assert is_true(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("yes", 1), ("OFF", 0), (True, 1), ("1\n", 1),  # Perl's `$` matches before one final newline
    (" 1", "fallback"), ("1 ", "fallback"), ("1\n\n", "fallback"), ("maybe", "fallback"),
])
def test_the_sandbox_api_reads_the_same_words_anchored_as_pve_does(value: object, expected: object) -> None:
    # pve-common JSONSchema.pm parse_boolean: m/^(1|on|yes|true)$/i, no blanks (vzkeep's files tolerate them)
    assert api_parse_boolean(value, "fallback") == expected
