"""Run the executable steps of a Markdown runbook, so a runbook that no longer works fails a test.

A step is executable when its fenced code block's info string is exactly `bash runnable`:

    ```bash runnable
    vzkeep state versions --stack prod
    ```

Blocks run in document order, each with `bash -euo pipefail -c`, all in the same working directory (so a
step can leave a file for the next one; shell variables do not carry over). Plain `bash` blocks (steps
that need the Pulumi CLI, a PVE host or a human decision) are not run.

    from tests.runbook_runner import run_runbook
    outputs = run_runbook(Path("docs/runbooks/x.md"), cwd=tmp_path, env={**os.environ, "FOO": "1"})
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

RUNNABLE_INFO = "bash runnable"
# CommonMark fences: up to 3 spaces of indent, then ``` or ~~~ (3 or more), then the info string.
_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    info: str
    text: str


def code_blocks(markdown: str) -> list[Block]:
    """Every fenced code block of the document, in order."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        match = _OPEN.match(lines[index])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):
            index += 1
            continue
        fence, start = match["fence"], index
        body: list[str] = []
        index += 1
        while index < len(lines) and not _closes(lines[index], fence):
            body.append(lines[index])
            index += 1
        blocks.append(Block(start + 1, match["info"].strip(), "\n".join(body) + "\n"))
        index += 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and stripped.startswith(fence[0] * len(fence))
        and set(stripped) == {fence[0]}
    )


def runnable_blocks(path: Path) -> list[Block]:
    """The blocks whose info string is exactly `bash runnable`."""
    return [block for block in code_blocks(path.read_text()) if block.info == RUNNABLE_INFO]


def run_runbook(path: Path, *, cwd: Path, env: Mapping[str, str], timeout: float = 120.0) -> list[str]:
    """Run every runnable block of `path` in order; return each block's combined stdout+stderr.

    `env` is the complete environment of each block (pass `{**os.environ, ...}` to inherit). A block that
    exits non-zero fails with an AssertionError showing the runbook, the block and its output.
    """
    blocks = runnable_blocks(path)
    assert blocks, f"{path} has no ```{RUNNABLE_INFO} block: nothing would be tested"
    outputs: list[str] = []
    for number, block in enumerate(blocks, start=1):
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.text],
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        assert completed.returncode == 0, (
            f"{path}:{block.line}: runnable block {number}/{len(blocks)} exited {completed.returncode}\n"
            f"--- block ---\n{block.text}--- output ---\n{completed.stdout}"
        )
        outputs.append(completed.stdout)
    return outputs
