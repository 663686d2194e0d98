"""Following a PVE task to its end: bounded, interruptible, retried, and never silent on a stepped sandbox.

A PVE task (restore, start, destroy…) runs on its node whatever the client does; the client polls
``GET /nodes/{node}/tasks/{upid}/status`` until ``status`` is ``stopped`` and reads the new lines of
``…/log`` as they come (pve-manager ``PVE/API2/Tasks.pm`` ``read_task_status``, ``read_task_log``).
Every wait here has an end and says what is still running when it ends:

- one :class:`Wait` bounds a whole command (``--timeout``): when it runs out, :class:`TaskStillRunning`
  (exit 3) names the task and the commands to follow or stop it;
- Ctrl-C raises :class:`TaskInterrupted` (exit 130) with the same words: PVE's task goes on;
- a dropped connection, a timeout or a proxy error (502-504, 595, 596) while *reading* is retried with
  exponential backoff (0.5 s doubling to 15 s) until the bound; nothing that writes is ever repeated;
- on a sandbox whose clock is stepped (it moves only when told, ``vzkeep sandbox serve --stepped``) a task
  never ends by itself: with ``advance`` the wait moves the clock (1 s, doubling to 60 s, per round),
  otherwise it stops within seconds saying so and what to run. Without a sandbox connection, a log that
  has ended (``TASK OK``) while PVE still says "running" is reported once as the likely cause.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from vzkeep.errors import ExitStatus, VzkeepError, WaitTimeout
from vzkeep.pve.client import PveApiError, PveClient, PveUnreachable

# The last line a PVE worker writes (pve-common src/PVE/RESTEnvironment.pm fork_worker).
_FINAL_LINE = re.compile(r"^TASK (OK|ERROR: .*|WARNINGS: \d+)$")
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 15.0
_ADVANCE_FIRST, _ADVANCE_MAX = 1.0, 60.0


@dataclass(frozen=True)
class Task:
    """A PVE task being waited for, and what it does, in words (``restore of VM 101``)."""

    node: str
    upid: str
    what: str = "task"


class ClusterClock(Protocol):
    """A cluster whose clock can be read and moved: the sandbox (the CLI supplies it for ``--sandbox``)."""

    def stepped(self) -> bool:
        """True when the clock moves only when told."""
        ...

    def now(self) -> float:
        """The cluster's current time (epoch seconds)."""
        ...

    def advance(self, seconds: float) -> None:
        """Move the cluster's clock forward (tasks due by then end, scheduled jobs run)."""
        ...


@dataclass
class Wait:
    """How long a command may wait on PVE in total, and how: shared by every task the command follows.

    ``connection`` is the command line's connection options (``--sandbox FILE``…), quoted, so that the
    commands suggested to follow or stop a task reach the same cluster.
    """

    timeout: float
    clock: ClusterClock | None = None
    advance: bool = False
    connection: str = ""
    on_note: Callable[[str], None] = lambda _line: None
    poll: float = 0.1
    max_poll: float = 1.0
    stall_after: float = 2.0  # wall seconds a task may wait on a stepped clock nobody moves
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    started: float = field(default=-1.0)
    _stepped: bool | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.monotonic()

    def remaining(self) -> float:
        return self.timeout - (self.monotonic() - self.started)

    def bounded(self, timeout: float) -> Wait:
        """A fresh bound for a step that must run even after the command's bound (cleaning up)."""
        return replace(self, timeout=timeout, started=-1.0)

    def cluster_is_stepped(self) -> bool:
        if self.clock is None:
            return False
        if self._stepped is None:
            self._stepped = self.clock.stepped()
        return self._stepped

    # -- what to tell the user ----------------------------------------------------------------------------

    def follow_command(self, task: Task) -> str:
        return f"vzkeep task follow {shlex.quote(task.upid)}{self._args()}"

    def stop_command(self, task: Task) -> str:
        return f"vzkeep task stop {shlex.quote(task.upid)}{self._args()}"

    def advance_command(self) -> str:
        return f"vzkeep sandbox advance 10m{self._args()}"

    def task_hint(self, task: Task) -> str:
        # PVE's own commands too, for a shell on the node (pve-manager PVE/CLI/pvenode.pm `task log`;
        # stopping is DELETE /nodes/{node}/tasks/{upid}, PVE/API2/Tasks.pm stop_task).
        quoted = shlex.quote(task.upid)
        return (f"follow it: {self.follow_command(task)} (on node {task.node}: pvenode task log {quoted}); "
                f"stop it: {self.stop_command(task)} (on the node: pvesh delete /nodes/{task.node}/tasks/{quoted})")

    def _args(self) -> str:
        return f" {self.connection}" if self.connection else ""


class TaskStillRunning(WaitTimeout):
    """The wait ended (bound reached, clock stepped, PVE unreachable) while the task may still run (exit 3)."""

    def __init__(self, message: str, hint: str, task: Task) -> None:
        super().__init__(message, hint)
        self.task = task


class TaskInterrupted(VzkeepError):
    """Ctrl-C while waiting on PVE (exit 130): the task, when there is one, goes on without us."""

    status = ExitStatus.INTERRUPTED

    def __init__(self, message: str, hint: str | None = None, task: Task | None = None) -> None:
        super().__init__(message, hint)
        self.task = task


def interrupted(task: Task, wait: Wait) -> TaskInterrupted:
    return TaskInterrupted(
        f"interrupted: PVE task {task.upid} ({task.what} on node {task.node}) is still running; "
        "PVE goes on without us", wait.task_hint(task), task)


# -- following --------------------------------------------------------------------------------------------


def follow_task(client: PveClient, task: Task, wait: Wait,
                on_line: Callable[[str], None] | None = None) -> tuple[str, list[str]]:
    """Wait until the task has stopped; hand every new log line to ``on_line``; (exitstatus, log)."""
    path = f"nodes/{task.node}/tasks/{task.upid}"
    lines: list[str] = []
    follower = _Follower(task, wait)
    try:
        while True:
            status = follower.read(lambda: client.get(f"{path}/status"))
            _read_new_lines(follower, client, path, lines, on_line)
            if status.get("status") == "stopped":
                _read_new_lines(follower, client, path, lines, on_line)
                return str(status.get("exitstatus", "unexpected status")), lines
            follower.still_running(lines)
    except KeyboardInterrupt:
        raise interrupted(task, wait) from None


def poll_until(check: Callable[[], bool], task: Task, wait: Wait, waiting_for: str) -> None:
    """Poll ``check`` (a read) until it is true, with the same bound, retries and clock as a task."""
    follower = _Follower(task, wait, waiting_for)
    try:
        while not follower.read(check):
            follower.still_running([])
    except KeyboardInterrupt:
        raise interrupted(task, wait) from None


def _read_new_lines(follower: _Follower, client: PveClient, path: str, lines: list[str],
                    on_line: Callable[[str], None] | None) -> None:
    entries = follower.read(lambda: client.get(f"{path}/log", start=len(lines), limit=0))
    for entry in entries:
        # PVE answers an empty log with one line "no content" (Tasks.pm read_task_log).
        if entry.get("t") == "no content" and not lines and entry.get("n") == 1:
            continue
        lines.append(str(entry.get("t", "")))
        if on_line is not None:
            on_line(lines[-1])


class _Follower:
    """The state of one wait: polling delay, clock steps, retries, and when to give up."""

    def __init__(self, task: Task, wait: Wait, waiting_for: str = "") -> None:
        self.task, self.wait = task, wait
        self.waiting_for = waiting_for or f"PVE task {task.upid} ({task.what} on node {task.node})"
        self.delay = wait.poll
        self.step = _ADVANCE_FIRST
        self.began = wait.monotonic()
        self.noted_log_end = False
        self.clock_seen: tuple[float, float] | None = None  # (cluster time, wall time) when last looked

    def read(self, call: Callable[[], Any]) -> Any:
        """One read, retried with backoff while PVE cannot be reached (never past the bound)."""
        backoff = _BACKOFF_FIRST
        while True:
            try:
                return call()
            except (PveUnreachable, PveApiError) as exc:
                if not getattr(exc, "transient", False):
                    raise
                if self.wait.remaining() <= 0:
                    raise TaskStillRunning(
                        f"no answer from PVE ({exc}) until the {self.wait.timeout:g} s limit while waiting for "
                        f"{self.waiting_for}; it may still be running", self.wait.task_hint(self.task),
                        self.task) from None
                pause = min(backoff, max(self.wait.remaining(), 0.0))
                self.wait.on_note(f"lost contact with PVE ({exc}); retrying in {pause:.1f} s")
                self.wait.sleep(pause)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def still_running(self, lines: list[str]) -> None:
        """Called after each poll that found the task running: move the clock, give up, or sleep."""
        wait = self.wait
        if wait.remaining() <= 0:
            raise TaskStillRunning(
                f"{self.waiting_for} is still running after {wait.timeout:g} s (--timeout)",
                wait.task_hint(self.task), self.task)
        if wait.clock is not None and wait.advance:
            wait.clock.advance(self.step)
            self.step = min(self.step * 2, _ADVANCE_MAX)
            wait.sleep(wait.poll)
            return
        waited = wait.monotonic() - self.began
        # The sandbox is asked about its clock only once a task has outlasted the grace: a task that ends
        # quickly (every task on a real cluster's fast path, or a pumped sandbox) costs no extra call.
        if waited >= wait.stall_after and wait.cluster_is_stepped() and self._clock_stands_still():
            raise TaskStillRunning(
                f"{self.waiting_for} is still running, and the sandbox's clock is stepped: it moves only when "
                "told, so the task cannot end by itself",
                f"re-run with --advance to move the clock while waiting, or move it yourself "
                f"({wait.advance_command()}) and then {wait.follow_command(self.task)}", self.task)
        if not self.noted_log_end and lines and _FINAL_LINE.match(lines[-1]) and waited >= wait.stall_after:
            self.noted_log_end = True
            wait.on_note(f"PVE's log of task {self.task.upid} has ended ({lines[-1]}) but PVE still reports it "
                         "running: is the cluster a sandbox whose clock is stepped? Then connect with --sandbox "
                         f"FILE and add --advance, or run `vzkeep sandbox advance 10m --sandbox FILE`")
        wait.sleep(max(0.0, min(self.delay, wait.remaining())))
        self.delay = min(wait.max_poll, self.delay * 1.5)

    def _clock_stands_still(self) -> bool:
        """True once the stepped clock has not moved for ``stall_after`` wall seconds (someone else, a
        `vzkeep sandbox advance` in another shell for instance, may be moving it: then keep waiting)."""
        clock = self.wait.clock
        if clock is None:
            return False
        wall = self.wait.monotonic()
        if self.clock_seen is None:
            self.clock_seen = (clock.now(), wall)
            return False
        if wall - self.clock_seen[1] < self.wait.stall_after:
            return False
        cluster_now = clock.now()
        if cluster_now != self.clock_seen[0]:
            self.clock_seen = (cluster_now, wall)
            return False
        return True
