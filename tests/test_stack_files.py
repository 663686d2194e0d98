"""Stack files are untrusted input (a fork's pull request), read the way Pulumi reads them.

Each defect found by feeding hostile files to `vzkeep preview` has a case here: an alias bomb,
duplicate keys, invalid UTF-8, a token under a misspelled key, a plain token under a misspelled
provider key, a password in the endpoint URL; plus YAML 1.2 semantics (`at: 21:30` is a string, as
for Pulumi's Go reader) and path settings that must stay absolute and clean.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from typer.testing import CliRunner

from tests.helpers.memory import peak_rss_kib, reset_peak_rss
from tests.helpers.stacks import ROOT
from vzkeep.cli import app
from vzkeep.config import ConfigError, load_stack_file
from vzkeep.yamlfile import MAX_BYTES, MAX_DEPTH, YamlFileError, load_yaml, parse_yaml

runner = CliRunner()
TOKEN = "7381929402:AAFq3xKpL0Zr9wXcVbNm1QeRtYuIoPaSdFg"  # Telegram's shape: bot id, colon, 35 characters
PVE_TOKEN = "root@pam!ci=6f1c7d2e-93ab-4c55-8e21-0d9b3a7f4c10"


def prod_text() -> str:
    return (ROOT / "Pulumi.prod.yaml").read_text()


def preview(tmp_path: Path, text: str | bytes, *extra: str):
    path = tmp_path / "Pulumi.prod.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    return runner.invoke(app, ["preview", "--stack", "prod", "--root", str(tmp_path), *extra])


def assert_refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("vzkeep: error: ")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# -- the defects, one regression test each -----------------------------------------------------------------


def test_an_alias_bomb_is_refused_at_once_without_expanding(tmp_path: Path) -> None:
    bomb = ['  vzkeep:bomb: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    bomb += [f"  vzkeep:bomb{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
             f"*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 10)]
    text = prod_text() + "\n".join(bomb) + "\n"
    assert len("\n".join(bomb).encode()) < 1024  # 10^10 strings once expanded
    began, rss = time.monotonic(), reset_peak_rss()
    result = preview(tmp_path, text)
    assert time.monotonic() - began < 5
    assert peak_rss_kib() - rss < 100_000  # KiB: nothing was expanded
    line = prod_text().count("\n") + 1
    assert_refused(result, f"Pulumi.prod.yaml line {line}: anchors and aliases (&name, *name) are not allowed")


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path: Path) -> None:
    # PyYAML kept the last `at`, Pulumi's reader refuses the file: the check must not pass it.
    text = prod_text().replace('    at: "02:00"\n', '    at: "02:00"\n    mode: stop\n    at: "13:00"\n')
    result = preview(tmp_path, text)
    assert_refused(result, "Pulumi.prod.yaml line 14: duplicate key 'at' (first on line 12)")


def test_duplicate_top_level_keys_are_refused(tmp_path: Path) -> None:
    text = prod_text() + "  proxmoxve:endpoint: https://evil.example:8006/\n"
    assert_refused(preview(tmp_path, text), "duplicate key 'proxmoxve:endpoint' (first on line 4)")


def test_invalid_utf8_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    raw = prod_text().encode().replace(b"name: traefik", b"name: tr\xe9fik")
    result = preview(tmp_path, raw)
    line = prod_text()[: prod_text().index("name: traefik")].count("\n") + 1
    assert_refused(result, f"Pulumi.prod.yaml line {line}: not UTF-8 text (invalid byte 0xe9)", "hint: save the file")


def test_a_token_under_a_misspelled_secret_key_is_never_printed(tmp_path: Path) -> None:
    for value in (TOKEN, "123:ABCdef"):  # a whole token, and one cut short as in the issue
        result = preview(tmp_path, prod_text() + f"  vzkeep:telegramBotTokn: {value}\n")
        assert_refused(result, "unknown key vzkeep:telegramBotTokn (did you mean vzkeep:telegramBotToken?)")
        assert value not in result.stdout + result.stderr
        assert "ABC" not in result.stderr


def test_a_plain_token_under_a_misspelled_provider_key_fails_the_policy_pack_unprinted(tmp_path: Path) -> None:
    text = prod_text() + f'  proxmoxve:apiTokn: "{PVE_TOKEN}"\n'
    result = preview(tmp_path, text)
    assert result.exit_code == 1, result.stderr
    assert "FAIL no-plaintext-secrets" in result.stdout
    assert "'proxmoxve:apiTokn' is a plain string" in result.stdout
    as_json = preview(tmp_path, text, "--json")
    assert as_json.exit_code == 1
    assert PVE_TOKEN not in result.stdout + result.stderr + as_json.stdout + as_json.stderr
    failed = {p["policy"] for p in json.loads(as_json.stdout)["policies"] if not p["passed"]}
    assert failed == {"no-plaintext-secrets"}


def test_a_plain_api_token_is_hidden_in_the_preview_too(tmp_path: Path) -> None:
    result = preview(tmp_path, prod_text() + f'  proxmoxve:apiToken: "{PVE_TOKEN}"\n')
    assert result.exit_code == 1  # no-plaintext-secrets
    assert PVE_TOKEN not in result.stdout + result.stderr
    assert "apiToken = [" in result.stdout  # [secret] or [hidden: plain credential], never the value


def test_a_password_in_the_endpoint_url_is_refused_and_not_echoed(tmp_path: Path) -> None:
    text = prod_text().replace("https://pve1.home.arpa:8006/", "https://root:hunter2@pve1.home.arpa:8006/")
    result = preview(tmp_path, text)
    assert_refused(result, 'line 4: proxmoxve:endpoint = "https://***@pve1.home.arpa:8006/": a URL must not hold '
                           "a user name or password")
    assert "hunter2" not in result.stdout + result.stderr and "root:" not in result.stderr


# -- YAML 1.2, as Pulumi reads it ---------------------------------------------------------------------------


def test_an_unquoted_time_is_a_string_as_for_pulumi(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) read `at: 02:30` as the integer 150 and refused a file Pulumi accepts.
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(prod_text().replace('at: "02:00"', "at: 02:30"))
    settings = load_stack_file(path)
    assert settings.backup.at == "02:30"


@pytest.mark.parametrize("word", ["yes", "on", "off", "no"])
def test_yaml_1_1_booleans_are_strings(word: str) -> None:
    assert parse_yaml(f"a: {word}\n", "f").data == {"a": word}


class Bad(NamedTuple):
    description: str
    text: str
    message: str


BAD_YAML = [
    Bad("too deep", "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
        f"line 1: nested more than {MAX_DEPTH} levels deep"),
    Bad("python object tag", "a: !!python/object/apply:os.system [id]\n", "the tag tag:yaml.org,2002:python"),
    Bad("binary tag", "a: !!binary aGk=\n", "is not allowed"),
    Bad("custom tag", "a: !Ref x\n", "the tag !Ref is not allowed"),
    Bad("two documents", "a: 1\n---\nb: 2\n", "line 2: holds more than one YAML document"),
    Bad("YAML 1.1 directive", "%YAML 1.1\n---\na: 1\n", "only YAML 1.2 is read"),
    Bad("a list as a key", "? [a]\n: 1\n", "a key must be a plain value"),
    Bad("an integer too long to convert", "a: " + "9" * 5000 + "\n", "line 1: cannot read the value"),
    Bad("control character", "a: \"x\\0y\"\nb: \x07\n", "not valid YAML"),
    Bad("unclosed flow", "a: [1, 2\n", "not valid YAML"),
]


@pytest.mark.parametrize("case", BAD_YAML, ids=lambda c: c.description)
def test_hostile_yaml_is_refused_with_a_line(case: Bad) -> None:
    with pytest.raises(YamlFileError) as caught:
        parse_yaml(case.text.encode(), "f.yaml")
    assert case.message in caught.value.message
    assert caught.value.message.startswith("f.yaml")


def test_a_file_larger_than_the_bound_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(YamlFileError, match="larger than 1024 KiB"):
        load_yaml(path)
    assert_refused(preview(tmp_path, path.read_bytes()), "larger than 1024 KiB")


def test_lines_are_known_for_every_key_and_item() -> None:
    document = parse_yaml(b"config:\n  a:\n    - {x: 1}\n    - y: 2\n      z: 3\n", "f")
    assert document.line_of(("config", "a", 1, "z")) == 5
    assert document.line_of(("config", "a", 0, "x")) == 3
    assert document.line_of(("config", "a", 0, "missing")) == 3  # the nearest known ancestor


# -- paths and other values ---------------------------------------------------------------------------------

PATHS = [
    ("vzkeep:backup.storage.path", "/mnt/backup/../../etc", "contains '..'"),
    ("vzkeep:backup.storage.path", "/mnt/backup/prod\nx", "control characters"),
    ("vzkeep:remote.export", "/volume1/../x", "contains '..'"),
    ("vzkeep:monitoring.rulesDir", "rules.d", "is not an absolute path"),
    ("vzkeep:monitoring.localDir", "out/../../x", "contains '..'"),
    ("vzkeep:monitoring.dashboardsDir", "/var/lib/grafana\x1b[31m", "control characters"),
]


@pytest.mark.parametrize(("key", "value", "message"), PATHS, ids=[f"{k}={v!r}" for k, v, _ in PATHS])
def test_paths_stay_absolute_and_clean(tmp_path: Path, key: str, value: str, message: str) -> None:
    from tests.helpers.stacks import mutated, write_stack

    path = write_stack(tmp_path, "prod", mutated("prod", {key: value}))
    with pytest.raises(ConfigError) as caught:
        load_stack_file(path)
    assert caught.value.key == key and message in str(caught.value)


def test_paths_are_normalised(tmp_path: Path) -> None:
    from tests.helpers.stacks import mutated, write_stack

    path = write_stack(tmp_path, "prod", mutated("prod", {"vzkeep:backup.storage.path": "//mnt//backup/./prod/"}))
    assert load_stack_file(path).storage_path == "/mnt/backup/prod"


# -- what preview says about secrets ------------------------------------------------------------------------


def test_preview_warns_only_about_the_secrets_each_stack_needs_labelled() -> None:
    result = runner.invoke(app, ["preview", "--root", str(ROOT)])
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    # prod and lab deliver their rules over SSH (sshPrivateKey); only monitoring runs the exporter, the
    # S3 server, the Telegram route and the drill timer. Each warning once per stack, saying which stack.
    assert sorted(warnings) == sorted([
        "warning: stack lab: vzkeep:sshPrivateKey is not set: run `pulumi config set --secret vzkeep:sshPrivateKey "
        "<value>`",
        *(f"warning: stack monitoring: vzkeep:{key} is not set: run `pulumi config set --secret vzkeep:{key} "
          "<value>`" for key in ("s3SecretKey", "sshPrivateKey", "telegramBotToken", "drillApiToken")),
        "warning: stack prod: vzkeep:sshPrivateKey is not set: run `pulumi config set --secret vzkeep:sshPrivateKey "
        "<value>`",
    ])
