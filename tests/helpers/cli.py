"""Driving a running sandbox from tests: its clock while a command waits, and the ``vzkeep`` CLI in-process.

- ``ClockPump``: the test sandbox's clock is stepped, and a PVE task looks running until the simulated
  clock reaches its end; the pump moves the clock in small steps while a command waits for its tasks,
  as time passes on a real cluster.
- ``invoke``: run the ``vzkeep`` CLI in-process with the sandbox connection in the environment.
- ``sandbox_cli``: a ``vzkeep sandbox …`` control command (a fault, a node added...) that must succeed.
"""

from __future__ import annotations

from typer.testing import CliRunner, Result

from tests.helpers.background import Background
from tests.helpers.sandbox import RunningSandbox
from vzkeep.cli import app as cli_app

DAY = 86400


class ClockPump(Background):
    """Advance the sandbox clock by ``step`` simulated seconds every ``interval`` wall seconds."""

    def __init__(self, sb: RunningSandbox, step: float = 20.0, interval: float = 0.01) -> None:
        super().__init__(interval, "clock-pump")
        self.sb, self.step = sb, step

    def tick(self) -> None:
        self.sb.sandbox.advance(self.step)


def settle(sb: RunningSandbox) -> None:
    """Let every task started so far end (one simulated hour), e.g. after a scheduled job run."""
    sb.advance(3600)


def with_backups(sb: RunningSandbox, days: int = 1) -> None:
    """Run the seed's jobs for ``days`` simulated days (8 days include the weekly offsite job)."""
    sb.advance(days * DAY)
    settle(sb)


# -- the CLI --------------------------------------------------------------------------------------------


def invoke(sb: RunningSandbox, args: list[str], tmp_state: str | None = None, stdin: str | None = None,
           pump: bool = True) -> Result:
    """``vzkeep ARGS`` in-process against ``sb`` (clock pumped while it runs); stdin is not a terminal."""
    env = {"VZKEEP_SANDBOX": str(sb.sandbox_json)}
    if tmp_state is not None:
        env["VZKEEP_STATE_DIR"] = tmp_state
    runner = CliRunner()
    if not pump:
        return runner.invoke(cli_app, args, env=env, input=stdin)
    with ClockPump(sb):
        return runner.invoke(cli_app, args, env=env, input=stdin)


def sandbox_cli(sb: RunningSandbox, *args: str) -> Result:
    """``vzkeep sandbox ARGS`` against ``sb`` (its control API); fails the test when the command fails."""
    result = invoke(sb, ["sandbox", *args], pump=False)
    assert result.exit_code == 0, f"vzkeep sandbox {' '.join(args)}: {result.stdout}{result.stderr}"
    return result
