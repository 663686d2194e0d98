"""The command line as a whole: one error handler, one way to print, lazy loading, --version.

Every command is driven into an error and must end the same way: its exit status, and on stderr
exactly one line of message (``vzkeep: error: …``) and one line of hint (``hint: …``), never a
traceback. Start-up stays fast because ``vzkeep --help`` imports no sub-command's dependencies.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import pytest
from typer.testing import CliRunner

from tests.helpers.stacks import ROOT
from vzkeep.cli import COMMANDS, app, load_command, output
from vzkeep.errors import ExitStatus

runner = CliRunner()
NO_CONNECTION = {"VZKEEP_ENDPOINT": "", "VZKEEP_SANDBOX": "", "VZKEEP_TOKEN_FILE": "", "PULUMI_BACKEND_URL": "",
                 "NO_COLOR": "1"}


class Failure(NamedTuple):
    command: str
    args: list[str]
    status: ExitStatus
    message: str  # a fragment of the message line


def _failures(tmp: Path) -> list[Failure]:
    used = tmp / "used"
    used.mkdir()
    (used / "sandbox.json").write_text("{}")
    return [
        Failure("schedule", ["schedule", "next", "daily 02:00"], ExitStatus.USAGE, "invalid calendar event"),
        Failure("schedule (finding)", ["schedule", "next", "2020-07-31", "--tz", "UTC"], ExitStatus.FINDING,
                "has no run after"),
        Failure("retention", ["retention", "plan", "-p", "keep-dayly=1", "/dev/null"], ExitStatus.USAGE,
                "'keep-dayly' is not a retention option"),
        Failure("preview", ["preview", "--stack", "nope", "--root", str(ROOT)], ExitStatus.USAGE,
                "--stack nope: no Pulumi.nope.yaml"),
        Failure("sandbox", ["sandbox", "status", "--sandbox", str(tmp / "none" / "sandbox.json")],
                ExitStatus.USAGE, "no sandbox connection file"),
        Failure("demo", ["demo", "--dir", str(used)], ExitStatus.USAGE, "already holds a sandbox"),
        Failure("backups", ["backups", "list"], ExitStatus.USAGE, "no PVE endpoint"),
        Failure("verify", ["verify", "--results", str(tmp / "verify.json")], ExitStatus.USAGE, "nothing to verify"),
        Failure("restore", ["restore", "100"], ExitStatus.USAGE, "no PVE endpoint"),
        Failure("drill", ["drill", "--scratch", "5-1"], ExitStatus.USAGE, "--scratch '5-1'"),
        Failure("exporter", ["exporter", "--interval", "0.1", "--once"], ExitStatus.USAGE, "--interval 0.1"),
        Failure("monitoring", ["monitoring", "render", "--stack", "nope", "--root", str(ROOT)], ExitStatus.USAGE,
                "stack file not found"),
        Failure("state", ["state", "versions", "--stack", "prod"], ExitStatus.USAGE, "no backend URL"),
        Failure("task", ["task", "stop", "UPID:pve1:nope"], ExitStatus.USAGE, "is not a PVE task id"),
        Failure("bad option", ["schedule", "next", "daily", "--count", "0"], ExitStatus.USAGE, "--count"),
        Failure("unknown command", ["scedule"], ExitStatus.USAGE, "Did you mean 'schedule'"),
    ]


def test_every_top_level_command_has_a_failure_case(tmp_path: Path) -> None:
    covered = {case.args[0] for case in _failures(tmp_path)}
    assert set(COMMANDS) <= covered


@pytest.mark.parametrize("index", range(16))
def test_each_command_fails_with_one_message_line_and_one_hint_line(tmp_path: Path, index: int) -> None:
    case = _failures(tmp_path)[index]
    result = runner.invoke(app, case.args, env=NO_CONNECTION)
    assert result.exit_code == case.status, (case.command, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, (case.command, result.stderr)
    assert lines[0].startswith("vzkeep: error: ") and case.message in lines[0], (case.command, lines)
    assert lines[1].startswith("hint: ") and len(lines[1]) > len("hint: ") + 5, (case.command, lines)
    assert "Traceback" not in result.stdout + result.stderr


def test_an_unexpected_error_names_its_type_exits_70_and_offers_the_traceback(monkeypatch) -> None:
    from vzkeep.cli import schedule

    def broken(spec: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(schedule.calendar, "parse", broken)
    result = runner.invoke(app, ["schedule", "next", "daily"])
    assert result.exit_code == ExitStatus.INTERNAL
    assert result.stderr.splitlines() == [
        "vzkeep: error: RuntimeError: boom",
        "hint: this is a bug in vzkeep: re-run with --traceback (or VZKEEP_TRACEBACK=1) to see where, and report it",
    ]
    shown = runner.invoke(app, ["--traceback", "schedule", "next", "daily"])
    assert isinstance(shown.exception, RuntimeError)  # re-raised: the runner holds the traceback


def test_ctrl_c_exits_130_and_says_so(monkeypatch) -> None:
    from vzkeep.cli import schedule

    def interrupted(spec: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(schedule.calendar, "parse", interrupted)
    result = runner.invoke(app, ["schedule", "next", "daily"])
    assert result.exit_code == 130
    assert result.stderr.startswith("vzkeep: error: interrupted")


def test_config_errors_list_every_problem_under_one_message(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    text = text.replace("keepDaily: 7,", "keepDaly: 7,").replace("mode: snapshot", "mode: snapshop")
    text = text.replace("name: prod\n", "name: prod\n    timezone: Mars/Olympus\n", 1).replace(
        "    timezone: Europe/Paris\n", "", 1)
    (tmp_path / "Pulumi.prod.yaml").write_text(text)
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    result = runner.invoke(app, ["preview", "--stack", "prod", "--root", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    source = tmp_path / "Pulumi.prod.yaml"
    assert lines[0] == f"vzkeep: error: {source} is not a valid vzkeep stack config (3 problems):"
    assert lines[1].startswith("  line 8: vzkeep:environment.timezone = \"Mars/Olympus\": unknown time zone")
    assert lines[2].startswith("  line 14: vzkeep:backup.mode = \"snapshop\": Input should be")
    assert lines[3] == "  line 17: vzkeep:backup.retention.keepDaly: unknown key keepDaly (did you mean keepDaily?)"
    assert lines[4] == "hint: fix them in Pulumi.prod.yaml, then run: vzkeep preview --stack prod"
    assert len(lines) == 5


# -- printing ---------------------------------------------------------------------------------------------


def test_user_data_is_printed_as_typed_never_as_markup_or_emoji(tmp_path: Path, capsys) -> None:
    state = tmp_path / "sb[red]x"
    fingerprint = "4E:1B:0F:A5:53:CD:58:9A:smile:"
    output.console().print(f"{state} {fingerprint}")
    assert capsys.readouterr().out == f"{state} {fingerprint}\n"
    state.mkdir()
    (state / "sandbox.json").write_text("{}")
    result = runner.invoke(app, ["demo", "--dir", str(state)])
    assert f"--dir {state} already holds a sandbox" in result.stderr


def test_the_old_name_of_the_sandbox_directory_still_works_unlisted(tmp_path: Path) -> None:
    # `--state` named the sandbox's directory before the word was kept for the IaC state; runbooks may use it.
    used = tmp_path / "used"
    used.mkdir()
    (used / "sandbox.json").write_text("{}")
    result = runner.invoke(app, ["demo", "--state", str(used)])
    assert result.exit_code == ExitStatus.USAGE and f"--dir {used} already holds a sandbox" in result.stderr
    with socket.socket() as busy:  # serve seeds the directory it is given, then fails on the busy port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        fresh = tmp_path / "fresh"
        result = runner.invoke(app, ["sandbox", "serve", "--state", str(fresh), "--port", str(busy.getsockname()[1])])
    assert result.exit_code == ExitStatus.USAGE and "already in use" in result.stderr, result.output
    assert (fresh / "cluster.json").exists()
    for command in (["demo"], ["sandbox", "serve"]):
        assert "--state" not in runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout


def test_the_sandbox_banner_shows_the_fingerprint_and_state_as_they_are(tmp_path: Path, capsys) -> None:
    from vzkeep.cli.sandbox import _print_banner

    fingerprint = ":".join(["0F", "A5", "53", "CD", "58"] * 6 + ["CD", "CD"])
    info = {"url": "https://127.0.0.1:8006", "fingerprint": fingerprint, "host": "127.0.0.1", "port": 8006,
            "tokens": {"admin": {"user": "root@pam", "token_name": "admin", "token_value": "v"}}}
    _print_banner(info, True, tmp_path / "sb[red]x")
    out = capsys.readouterr().out
    assert f"fingerprint  {fingerprint}\n" in out and "💿" not in out
    assert f"in {tmp_path / 'sb[red]x'}\n" in out


def test_piped_output_is_neither_wrapped_nor_cut(tmp_path: Path) -> None:
    name = "vzkeep-" + "very-long-guest-name-" * 8
    volid = f"backup-prod:backup/vzdump-qemu-100-2026_01_01-02_00_00.vma.zst.{name}"
    listing = tmp_path / "backups.json"
    listing.write_text(json.dumps([{"volid": volid, "ctime": 1767229200, "vmid": 100}]))
    result = runner.invoke(app, ["retention", "plan", "-p", "keep-daily=1", "--tz", "UTC", str(listing)])
    assert result.exit_code == 0, result.stderr
    assert any(volid.rsplit("/", 1)[1] in line for line in result.stdout.splitlines())
    assert "…" not in result.stdout


def _in_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """Run vzkeep with stdout and stderr on a pseudo-terminal; return all it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "vzkeep", *args], stdout=follower, stderr=follower,
                               env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", **env})
    os.close(follower)
    written = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 20)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        written += chunk
    process.wait(timeout=20)
    os.close(leader)
    return written


COLOUR = re.compile(rb"\x1b\[[0-9;]*(?<![0-9])(3[0-9]|4[0-9]|9[0-7]|10[0-7])(?![0-9])[0-9;]*m")  # SGR colours, not bold


def test_no_color_is_honoured_on_a_terminal_errors_included() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _in_a_terminal(["schedule", "next", "daily 02:00"], {**env, "NO_COLOR": ""})
    plain = _in_a_terminal(["schedule", "next", "daily 02:00"], {"NO_COLOR": "1"})
    assert COLOUR.search(coloured) and b"vzkeep: error" in coloured  # a terminal gets colour…
    assert not COLOUR.search(plain) and b"invalid calendar event" in plain  # …unless NO_COLOR (bold may stay)


def test_json_has_one_indentation() -> None:
    result = runner.invoke(app, ["schedule", "next", "daily", "--tz", "UTC", "--after", "0", "-n", "1", "--json"])
    assert result.stdout.startswith('[\n  {\n    "timestamp": 86400,')


SIZES = [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (8 * 1024**3, "8.0 GiB"),
         (5 * 1024**5, "5.0 PiB"), (3 * 1024**6, "3072.0 PiB")]


@pytest.mark.parametrize(("size", "text"), SIZES, ids=[t for _, t in SIZES])
def test_human_size(size: int, text: str) -> None:
    assert output.human_size(size) == text


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_times_always_say_their_zone(zone: str, monkeypatch) -> None:
    monkeypatch.setenv("TZ", zone)
    summer, winter = 1782871200, 1767229200  # 2026-07-01 02:00 UTC, 2026-01-01 01:00 UTC
    assert output.format_time(summer, "Europe/Paris") == "2026-07-01 04:00:00 +0200"
    assert output.format_time(winter, "Europe/Paris", weekday=True) == "Thu 2026-01-01 02:00:00 +0100"
    assert output.format_time(winter, "UTC", seconds=False) == "2026-01-01 01:00 +0000"
    assert output.format_time(winter).endswith(("+0000", "+0100"))  # the machine's zone, said


# -- start-up ---------------------------------------------------------------------------------------------

HEAVY = ("pulumi", "pydantic", "cryptography", "proxmoxer", "vzkeep.sandbox")


def _imported_by(args: list[str], stdin: str = "") -> set[str]:
    """Run the CLI in a fresh interpreter; the top-level modules (and vzkeep.sandbox) it imported."""
    probe = ("import sys, runpy\nsys.argv = ['vzkeep', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('vzkeep', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "names = {m.split('.')[0] for m in sys.modules} | {'vzkeep.sandbox' for m in sys.modules "
             "if m.startswith('vzkeep.sandbox')}\nsys.stderr.write('\\n' + ' '.join(sorted(names)))\n")
    done = subprocess.run([sys.executable, "-c", probe, *args], input=stdin, capture_output=True, text=True,
                          timeout=60)
    return set(done.stderr.rsplit("\n", 1)[-1].split())


EVERYDAY = {"help": ["--help"], "schedule": ["schedule", "next", "daily", "--tz", "UTC"],
            "retention": ["retention", "plan", "-p", "keep-daily=1", "-"]}


@pytest.mark.parametrize("args", EVERYDAY.values(), ids=EVERYDAY.keys())
def test_everyday_commands_import_none_of_the_heavy_dependencies(args: list[str]) -> None:
    imported = _imported_by(args, stdin="[]")
    assert "vzkeep" in imported and "typer" in imported  # the probe saw the CLI run
    assert not imported & set(HEAVY), f"vzkeep {' '.join(args)} imported {sorted(imported & set(HEAVY))}"


@pytest.mark.parametrize("name", COMMANDS)
def test_the_root_help_line_of_each_command_is_its_own(name: str) -> None:
    command = load_command(name)
    assert COMMANDS[name].help == command.get_short_help_str(limit=200)


def test_version_comes_from_the_package_metadata() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"vzkeep {version('vzkeep')}\n"
    module = subprocess.run([sys.executable, "-m", "vzkeep", "--version"], capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and module.stdout == f"vzkeep {version('vzkeep')}\n"
