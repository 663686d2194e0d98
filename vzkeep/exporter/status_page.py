"""The status page at ``/``: the state of the backups, per environment, for a person (the metrics are for
Prometheus). Server-rendered HTML from the snapshot, one inline style sheet, no script, no external asset; it
reloads itself after each poll interval.

Per environment: each guest's last backup (age, size, status with PVE's own words on failure, verification,
offsite copy, last restore drill), the fill of the environment's backup storages against the 80% line, and
its jobs with their next run. Times are shown in the cluster's zone (``GET /nodes/{node}/time``) and say so;
ages are measured against the cluster's clock. Every piece of user data (names, notes, errors) is escaped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from zoneinfo import ZoneInfo

from vzkeep.exporter.snapshot import ArchiveStats, Attempt, DrillInfo, GuestInfo, JobInfo, Snapshot, Verification
from vzkeep.pve.values import UnknownTimeZone, load_zone

STORAGE_LIMIT = 0.80  # the fill the storage alert fires above
OFFSITE_PREFIX = "offsite-"  # offsite storages are named offsite-<env> (docs: RemoteStore)
NO_POOL = "(no pool)"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2329;background:#fff}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ccd}
p.meta{color:#555;margin:0 0 1em}
table{border-collapse:collapse;margin:.3em 0 1em}
th,td{padding:.25em .7em;text-align:left;border-bottom:1px solid #e3e6ea}
th{background:#f3f5f7;font-weight:600}td{white-space:nowrap}td.wrap{white-space:normal;max-width:28em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fde2e1;color:#8b0000}tr.failed td.status{font-weight:700}
.ok{color:#17692f}.bad{color:#b00020;font-weight:600}.muted{color:#777}
.banner{padding:.6em .9em;margin:.6em 0;border-radius:4px;background:#fff4e5;border:1px solid #e6a23c}
.banner.bad{background:#fde2e1;border-color:#b00020}
.fill{position:relative;width:22em;height:1.1em;background:#eef1f4;border:1px solid #c9d0d6;display:inline-block;
vertical-align:middle}
.fill .used{position:absolute;left:0;top:0;bottom:0;background:#5b8def}.fill .used.over{background:#d9534f}
.fill .limit{position:absolute;top:-3px;bottom:-3px;width:2px;background:#1d2329}
code{font-size:.95em}
"""


@dataclass(frozen=True)
class Clock:
    """How the page shows times: "now" on the cluster's clock, and the zone times are written in."""

    now: float
    zone: ZoneInfo
    zone_name: str

    @classmethod
    def of(cls, snapshot: Snapshot) -> Clock:
        if snapshot.clock is not None:
            try:
                return cls(snapshot.clock.time, load_zone(snapshot.clock.timezone), snapshot.clock.timezone)
            except UnknownTimeZone:
                return cls(snapshot.clock.time, ZoneInfo("UTC"), "UTC")
        return cls(time.time(), ZoneInfo("UTC"), "UTC")

    def when(self, epoch: float | None) -> str:
        """``2026-11-22 02:00 CET``: every time says its zone."""
        if not epoch:
            return "never"
        moment = datetime.fromtimestamp(epoch, UTC).astimezone(self.zone)
        return f"{moment:%Y-%m-%d %H:%M} {moment.tzname()}"

    def age(self, epoch: float | None) -> str:
        """``2d 3h ago``; a time ahead of the cluster's clock (clock skew between nodes) reads ``just now``."""
        if not epoch:
            return "never"
        seconds = int(self.now - epoch)
        if seconds < 60:
            return "just now"
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes = rest // 60
        if days:
            return f"{days}d {hours}h ago"
        if hours:
            return f"{hours}h {minutes}m ago"
        return f"{minutes}m ago"


def render(snapshot: Snapshot, refresh_seconds: float = 60.0) -> bytes:
    clock = Clock.of(snapshot)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{max(5, int(refresh_seconds))}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no favicon request, hence no 404 in the console
        "<title>vzkeep: backups</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>vzkeep: backups</h1>",
        _meta(snapshot, clock),
        *_banners(snapshot),
    ]
    for env, guests in _by_env(snapshot.guests).items():
        parts += _environment(snapshot, clock, env, guests)
    parts.append('<p class="meta">Metrics for Prometheus: <a href="/metrics">/metrics</a></p></body></html>\n')
    return "\n".join(parts).encode()


def _meta(snapshot: Snapshot, clock: Clock) -> str:
    source = "cluster clock" if snapshot.clock is not None else "this host's clock (PVE did not give its own)"
    # The poll time is the exporter host's own clock (its liveness), so it is shown as an age on that clock.
    polled = "never" if not snapshot.poll_timestamp else \
        Clock(time.time(), clock.zone, clock.zone_name).age(snapshot.poll_timestamp)
    return (f'<p class="meta">Now: {escape(clock.when(clock.now))} ({escape(clock.zone_name)}, {source}). '
            f"Last complete poll of PVE: {escape(polled)}. This page reloads itself.</p>")


def _banners(snapshot: Snapshot) -> list[str]:
    out = []
    if not snapshot.up:
        failed = ", ".join(snapshot.failed_parts) or "everything"
        out.append(f'<div class="banner bad">The last poll of PVE failed ({escape(failed)}): the data below may '
                   "be old.</div>")
    for m in snapshot.missing_privileges:
        out.append(f'<div class="banner">The exporter lacks PVE privilege <code>{escape(m.privilege)}</code> on '
                   f"<code>{escape(m.path)}</code>: it cannot see {escape(m.what)}.</div>")
    return out


def _by_env(guests: Iterable[GuestInfo]) -> dict[str, list[GuestInfo]]:
    found: dict[str, list[GuestInfo]] = defaultdict(list)
    for guest in guests:
        found[guest.env].append(guest)
    return {env: found[env] for env in sorted(found, key=lambda e: (e == "", e))}


def _environment(snapshot: Snapshot, clock: Clock, env: str, guests: list[GuestInfo]) -> list[str]:
    archives: dict[int, list[ArchiveStats]] = defaultdict(list)
    for a in snapshot.archives:
        archives[a.vmid].append(a)
    attempts = {a.vmid: a for a in snapshot.attempts}
    verified = {(v.vmid, v.storage): v for v in snapshot.verifications}
    drills = {(d.env, d.vmid): d for d in snapshot.drills}
    rows = [_guest_row(clock, g, archives.get(g.vmid, []), attempts.get(g.vmid), verified,
                       drills.get((g.env, g.vmid)), snapshot.covered.get(g.vmid, False)) for g in guests]
    jobs = [j for j in snapshot.jobs if j.env == env]
    out = [
        f"<section><h2>{escape(env or NO_POOL)}</h2>",
        "<table class=\"guests\"><thead><tr><th>guest</th><th>vmid</th><th>node</th><th>last backup</th>"
        "<th>age</th><th>size</th><th>status</th><th>verified</th><th>offsite</th><th>last drill</th></tr></thead>",
        "<tbody>", *rows, "</tbody></table>",
    ]
    out += _storages(snapshot, jobs)
    out += _jobs(clock, jobs)
    out.append("</section>")
    return out


def _guest_row(clock: Clock, guest: GuestInfo, archives: list[ArchiveStats], attempt: Attempt | None,
               verified: Mapping[tuple[int, str], Verification], drill: DrillInfo | None, covered: bool) -> str:
    onsite = _newest(a for a in archives if not a.storage.startswith(OFFSITE_PREFIX))
    offsite = _newest(a for a in archives if a.storage.startswith(OFFSITE_PREFIX))
    failed = attempt is not None and not attempt.ok
    if failed:
        status = f'FAILED: {escape(attempt.error or "see the task log")}'
    elif attempt is not None:
        status = '<span class="ok">OK</span>'
    else:
        status = '<span class="muted">no attempt seen</span>'
    if not covered:
        status += ' <span class="bad">(in no enabled backup job)</span>'
    check = verified.get((guest.vmid, onsite.storage)) if onsite else None
    if check is None:
        verify = '<span class="muted">not verified</span>'
    elif check.ok:
        verify = f'<span class="ok">sound</span>, {escape(clock.when(check.verified_at))}'
    else:
        verify = f'<span class="bad">CORRUPT</span>, {escape(clock.when(check.verified_at))}'
    cells = [
        escape(guest.name or "unnamed"),
        str(guest.vmid),
        escape(guest.node),
        escape(clock.when(onsite.last_ctime)) if onsite else "never",
        escape(clock.age(onsite.last_ctime)) if onsite else "never",
        _size(onsite.last_size) if onsite and onsite.last_ctime else "",
        status,
        verify,
        escape(clock.age(offsite.last_ctime)) if offsite else '<span class="muted">none</span>',
        _drill(clock, drill),
    ]
    tags = ['<td class="wrap">', '<td class="num">', "<td>", "<td>", "<td>", '<td class="num">',
            '<td class="status wrap">', "<td>", "<td>", "<td>"]
    row_class = ' class="failed"' if failed else ""
    return f"<tr{row_class}>" + "".join(f"{tag}{cell}</td>" for tag, cell in zip(tags, cells, strict=True)) + "</tr>"


def _newest(archives: Iterable[ArchiveStats]) -> ArchiveStats | None:
    found = [a for a in archives if a.last_ctime]
    return max(found, key=lambda a: a.last_ctime) if found else None


def _drill(clock: Clock, drill: DrillInfo | None) -> str:
    if drill is None:
        return '<span class="muted">none</span>'
    if drill.ok:
        seconds = drill.duration_seconds  # a homelab restore takes seconds to hours: "0.0 min" said nothing
        took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
        return f'<span class="ok">OK</span> in {took}, {escape(clock.age(drill.last_success))}'
    last = f", last success {escape(clock.age(drill.last_success))}" if drill.last_success else ""
    return f'<span class="bad">FAILED</span>{last}'


def _storages(snapshot: Snapshot, jobs: list[JobInfo]) -> list[str]:
    wanted = {j.storage for j in jobs}
    fill: dict[str, float] = {}
    for s in snapshot.storages:
        if s.storage in wanted and s.size:
            fill[s.storage] = max(fill.get(s.storage, 0.0), s.used / s.size)  # a shared one appears per node
    if not fill:
        return []
    out = ["<table class=\"storages\"><thead><tr><th>storage</th><th>used</th><th></th></tr></thead><tbody>"]
    for storage, ratio in sorted(fill.items()):
        over = " over" if ratio > STORAGE_LIMIT else ""
        bar = (f'<span class="fill" title="the line is {STORAGE_LIMIT:.0%}"><span class="used{over}" '
               f'style="width:{min(ratio, 1.0) * 100:.1f}%"></span>'
               f'<span class="limit" style="left:{STORAGE_LIMIT * 100:.0f}%"></span></span>')
        label = f'<span class="bad">{ratio:.0%}</span>' if over else f"{ratio:.0%}"
        out.append(f'<tr><td>{escape(storage)}</td><td class="num">{label}</td><td>{bar}</td></tr>')
    out.append("</tbody></table>")
    return out


def _jobs(clock: Clock, jobs: list[JobInfo]) -> list[str]:
    if not jobs:
        return []
    out = ["<table class=\"jobs\"><thead><tr><th>job</th><th>schedule</th><th>storage</th><th>next run</th>"
           "<th>last run</th><th>last result</th></tr></thead><tbody>"]
    for job in jobs:
        result = ("" if job.last_status is None
                  else '<span class="ok">OK</span>' if job.last_status else '<span class="bad">errors</span>')
        schedule = escape(job.schedule) + ("" if job.enabled else ' <span class="bad">(disabled)</span>')
        out.append(f"<tr><td>{escape(job.id)}</td><td>{schedule}</td><td>{escape(job.storage)}</td>"
                   f"<td>{escape(clock.when(job.next_run))}</td><td>{escape(clock.when(job.last_run))}</td>"
                   f"<td>{result}</td></tr>")
    out.append("</tbody></table>")
    return out


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
