"""Fuzzing `vzkeep preview` with generated stack files: it answers 0, 1 or 2, never a traceback.

Two generators, run in-process through the CLI (its one error handler included) so that thousands
of cases fit in CI's budget: YAML-looking text and bytes (syntax, anchors, tags, bad encodings,
deep nesting), and the shipped prod stack with random keys replaced, added or removed (values of
every JSON type, control characters, huge numbers), which often still runs the whole Pulumi program.
Each case must end with exit 0 (policies pass), 1 (a policy fails) or 2 (bad config), print no
traceback, and stay within a few seconds; the peak memory of the process that runs the previews stays
under 500 MB (a process of their own, measured by its own address space's peak: see tests.helpers.memory).
Derandomized: CI runs the same cases every time.
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.helpers.memory import peak_rss_kib
from tests.helpers.stacks import ROOT, shipped
from vzkeep.cli import app

runner = CliRunner()
MAX_SECONDS_PER_CASE = 5.0
MAX_RSS_KIB = 500 * 1024
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

TOKENS = ["config:", "\n", "  ", "- ", ": ", "vzkeep:backup", "vzkeep:environment", "name: prod", "proxmoxve:endpoint",
          "https://pve1:8006/", "&a", "*a", "!!str", "!!binary", "!Ref", "[", "]", "{", "}", ",", "'", '"', "#", "---",
          "%YAML 1.1", "? ", "<<: ", "~", "null", "21:30", "0x1F", "1e309", "9" * 40, "\t", "\\u0000", "\x00", "\x85",
          "\u2028", "keepDaily", "secure: v1:abc", "| \n", "> \n"]


def _run_preview(workdir: str, content: bytes) -> tuple[int, str, float, int]:
    """Runs in the fuzz's own process: exit status, output, seconds, and the process's peak RSS (KiB)."""
    (Path(workdir) / "Pulumi.prod.yaml").write_bytes(content)
    began = time.monotonic()
    result = runner.invoke(app, ["preview", "--stack", "prod", "--root", workdir, "--json"])
    elapsed = time.monotonic() - began
    return result.exit_code, result.stdout + result.stderr, elapsed, peak_rss_kib()


@pytest.fixture(scope="module")
def previews() -> Iterator[ProcessPoolExecutor]:
    """One fresh interpreter (spawned, not forked from the test worker) that runs every preview of the module."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _preview(previews: ProcessPoolExecutor, workdir: Path, content: bytes) -> None:
    exit_code, output, elapsed, peak_kib = previews.submit(_run_preview, str(workdir), content).result()
    shown = output[-2000:]
    assert exit_code in (0, 1, 2), f"exit {exit_code}: {shown}\n{content[:500]!r}"
    assert "Traceback" not in output, shown
    assert elapsed < MAX_SECONDS_PER_CASE, f"{elapsed:.1f} s for {content[:200]!r}"
    assert peak_kib < MAX_RSS_KIB, f"{peak_kib // 1024} MiB after {content[:200]!r}"


def _project(directory: Path) -> Path:
    (directory / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    return directory

yaml_like = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)), max_size=40).map("".join)
encoded = st.one_of(
    yaml_like.map(lambda text: text.encode("utf-8", "surrogatepass")),
    yaml_like.map(lambda text: ("config:\n  " + text).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.integers(1, 200).map(lambda depth: ("config:\n  x: " + "[" * depth + "]" * depth).encode()),
)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(["02:00", "daily", "sun 04:00", "/mnt/x", "../x", "a\nb", "\x1b[31m",
                                           "https://u:p@h/", "keep-all", "-1", "1e3", "pve1", "lxc", "qemu"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=10)
KEYS = ["environment", "backup", "inventory", "remote", "monitoring", "stateBucket", "objectStore"]


def _paths(document: dict[str, Any]) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []

    def walk(path: tuple[Any, ...], value: Any) -> None:
        found.append(path)
        if isinstance(value, dict):
            for key, item in value.items():
                walk((*path, key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk((*path, index), item)

    walk((), document["config"])
    return found[1:]


PROD = shipped("prod")
PROD_PATHS = _paths(PROD)
# Values that appear in the shipped stacks: swapped between keys, they often still validate, so the
# whole program and the policy pack run on unusual but accepted settings.
SHIPPED_VALUES = [value for name in ("prod", "lab", "monitoring") for value in shipped(name)["config"].values()]
SHIPPED_VALUES += [leaf for value in SHIPPED_VALUES if isinstance(value, dict) for leaf in value.values()]


@st.composite
def mutated_stacks(draw: st.DrawFn) -> bytes:
    document = copy.deepcopy(PROD)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["swap", "swap", "replace", "delete", "add", "rename"]))
        path = draw(st.sampled_from(PROD_PATHS))
        parent = document["config"]
        try:
            for part in path[:-1]:
                parent = parent[part]
            if action == "swap":
                parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(SHIPPED_VALUES)))
            elif action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif action == "add" and isinstance(parent, dict):
                parent[draw(st.sampled_from([*KEYS, "keepDaly", "telegramBotTokn", "vzkeep:x"]))] = draw(values)
            elif action == "rename" and isinstance(parent, dict) and path[-1] in parent:
                parent[str(path[-1]) + draw(st.text(min_size=1, max_size=2))] = parent.pop(path[-1])
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed the path
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode()


@settings(FUZZ, max_examples=250)
@given(mutated_stacks())
def test_mutated_stacks_never_crash_preview(previews: ProcessPoolExecutor, tmp_path: Path, content: bytes) -> None:
    _preview(previews, _project(tmp_path), content)  # one directory for every case: each overwrites the stack file


@settings(FUZZ, max_examples=2500)
@given(encoded)
def test_many_generated_texts_never_crash_preview(previews: ProcessPoolExecutor, tmp_path: Path,
                                                  content: bytes) -> None:
    _preview(previews, _project(tmp_path), content)


def test_the_memory_bound_is_the_previews_own_not_the_workers_that_spawned_them() -> None:
    # A worker above the bound spawns the previews' process: the bound must still see that process alone
    # (getrusage's ru_maxrss would report the worker's peak: Linux carries it across fork and exec).
    ballast = bytearray(MAX_RSS_KIB * 1024 + 64 * 1024**2)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page: resident, not reserved
    assert peak_rss_kib() > MAX_RSS_KIB
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        spawned = pool.submit(peak_rss_kib).result()
    assert spawned < 100 * 1024, f"{spawned // 1024} MiB for an interpreter that did nothing"
