"""`vzkeep schedule next`: output formats, time input, the node's zone, and exit codes."""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest
from typer.testing import CliRunner, Result

from tests.test_calendar import process_tz
from vzkeep.cli import app as root_app
from vzkeep.cli import schedule

runner = CliRunner()
DAY = 86400


def run(*args: str) -> Result:
    return runner.invoke(schedule.app, ["next", *args])


class Listing(NamedTuple):
    description: str
    args: list[str]
    lines: list[str]


LISTINGS = [
    Listing("brief example: 03:30 on the spring-forward Sunday",
            ["3:30", "--tz", "Europe/Vienna", "--after", "2026-03-29T01:00", "-n", "1"],
            ["Sun 2026-03-29 03:30:00 +0200"]),
    Listing("2:30 does not exist on 2026-03-29 in Vienna, so Sunday is skipped",
            ["2:30", "--tz", "Europe/Vienna", "--after", "2026-03-28T12:00", "--count", "2"],
            ["Mon 2026-03-30 02:30:00 +0200", "Tue 2026-03-31 02:30:00 +0200"]),
    Listing("workdays across a weekend and the DST switch",
            ["mon..fri 21:00", "--tz", "Europe/Vienna", "--after", "2026-03-27T12:00", "-n", "2"],
            ["Fri 2026-03-27 21:00:00 +0100", "Mon 2026-03-30 21:00:00 +0200"]),
    Listing("fall back: 2:30 runs once, at the first (CEST) 02:30",
            ["2:30", "--tz", "Europe/Vienna", "--after", "2026-10-24T12:00", "-n", "2"],
            ["Sun 2026-10-25 02:30:00 +0200", "Mon 2026-10-26 02:30:00 +0100"]),
    Listing("a spec in UTC is shown in the node's zone",
            ["sat 02:00 UTC", "--tz", "Europe/Vienna", "--after", "0", "-n", "1"],
            ["Sat 1970-01-03 03:00:00 +0100"]),
    Listing("a lone number is a minute", ["22", "--tz", "UTC", "--after", "0", "-n", "2"],
            ["Thu 1970-01-01 00:22:00 +0000", "Thu 1970-01-01 01:22:00 +0000"]),
]  # fmt: skip


@pytest.mark.parametrize("case", LISTINGS, ids=lambda c: c.description)
def test_lists_local_time_weekday_and_offset(case: Listing) -> None:
    result = run(*case.args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == case.lines


def test_epoch_output() -> None:
    result = run("sat 02:00 UTC", "--after", "0", "--count", "2", "--epoch")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(2 * DAY + 7200), str(9 * DAY + 7200)]


def test_json_output_for_scripts() -> None:
    result = run("sat 02:00 UTC", "--after", "0", "-n", "2", "--tz", "Europe/Vienna", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"timestamp": 180000, "local": "1970-01-03T03:00:00+01:00", "utc": "1970-01-03T02:00:00Z"},
        {"timestamp": 784800, "local": "1970-01-10T03:00:00+01:00", "utc": "1970-01-10T02:00:00Z"},
    ]


AFTER_FORMS = [
    ("epoch seconds", ["--after", "1774746000"]),  # 2026-03-29T01:00:00Z
    ("ISO with Z", ["--after", "2026-03-29T01:00:00Z"]),
    ("ISO with offset", ["--after", "2026-03-29T03:00+02:00"]),
    ("wall clock read in --tz", ["--after", "2026-03-29T03:00", "--tz", "Europe/Vienna"]),
]


@pytest.mark.parametrize(("description", "args"), AFTER_FORMS, ids=[d for d, _ in AFTER_FORMS])
def test_after_accepts_iso_8601_and_epoch(description: str, args: list[str]) -> None:
    result = run("*:0/15 UTC", "--epoch", "-n", "1", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(1774746000 + 15 * 60)]


def test_without_tz_the_machine_zone_is_used_like_a_pve_node() -> None:
    with process_tz(":Europe/Vienna"):
        result = run("2:30", "--after", "2026-03-28T12:00", "-n", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["Mon 2026-03-30 02:30:00 +0200"]


def test_default_after_is_now(monkeypatch) -> None:
    now = 1_790_000_000.5  # 2026-09-21 14:13:20 UTC: the machine's clock, pinned
    monkeypatch.setattr(schedule.time, "time", lambda: now)
    result = run("daily UTC", "--epoch", "-n", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[0] == "1790035200"  # 2026-09-22 00:00 UTC, the next midnight


class Refusal(NamedTuple):
    description: str
    args: list[str]
    code: int
    fragments: list[str]


REFUSALS = [
    Refusal("keyword combined with a time", ["daily 02:00"], 2,
            ["invalid calendar event 'daily 02:00' - unable to parse calendar event at 'daily' - "
             "Context(\"weekday\")", "write it alone"]),
    Refusal("minute out of range", ["61"], 2, ["invalid calendar event '61'", "minute 61 is too large"]),
    Refusal("empty", [""], 2, ["unable to parse calendar event - event is empty"]),
    Refusal("unknown zone", ["daily", "--tz", "Mars/Olympus"], 2, ["--tz", "'Mars/Olympus'", "IANA"]),
    Refusal("unreadable --after", ["daily", "--after", "yesterday"], 2, ["--after 'yesterday'", "ISO 8601"]),
    Refusal("count below 1", ["daily", "--count", "0"], 2, ["--count"]),
    Refusal("a date in the past never runs again", ["2020-07-31", "--tz", "UTC"], 1,
            ["calendar event '2020-07-31' has no run after"]),
    Refusal("a date that never exists", ["2021-02-29", "--tz", "UTC"], 1, ["has no run after"]),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.description)
def test_refusals_name_the_problem_and_exit_code(case: Refusal) -> None:
    result = run(*case.args)
    assert result.exit_code == case.code, result.output
    assert result.stdout == ""
    for fragment in case.fragments:
        assert fragment in result.stderr


def test_no_run_with_json_prints_an_empty_list_and_exits_1() -> None:
    result = run("2020-07-31", "--tz", "UTC", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == []


def test_fewer_runs_than_asked_is_noted_but_ok() -> None:
    result = run("2027,2028-01-01", "--tz", "UTC", "--after", "2026-06-01T00:00Z", "-n", "5", "--epoch")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["1798761600", "1830297600"]
    assert "has no run after Sat 2028-01-01 00:00:00 +0000" in result.stderr


def test_reachable_from_the_vzkeep_root_command() -> None:
    result = runner.invoke(root_app, ["schedule", "next", "weekly", "--tz", "UTC", "--after", "0", "--epoch",
                                      "-n", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(4 * DAY)]


def test_help_teaches_with_examples_and_quirks() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for fragment in ("Examples", "vzkeep schedule next 'mon..fri 21:00'", "'daily 02:00' is invalid", "--json"):
        assert fragment in result.stdout
