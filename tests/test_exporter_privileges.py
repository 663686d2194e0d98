"""The exporter on a token that may not see backups, as PVE treats a PVEAuditor token, and on the documented role.

PVE lists a backup volume only to a caller with ``Datastore.AllocateSpace`` on the storage and ``VM.Backup`` on
the guest (pve-storage ``src/PVE/Storage.pm`` check_volume_access, applied per volume by
``src/PVE/API2/Storage/Content.pm`` index): the auditor gets HTTP 200 and an empty list. The cluster here is
``fake_pve`` answering as PVE answers each token (``GET /access/permissions`` as pve-access-control's
``get_effective_permissions`` builds it for a role granted on ``/``); the rules run in a real Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fake_pve import FakeApi, build
from prometheus_client.parser import text_string_to_metric_families
from tools import wait_until

from vzkeep.config import load_stack_file, stack_file
from vzkeep.exporter import Exporter, Poller, render
from vzkeep.monitoring import rules
from vzkeep.monitoring.alert_preview import Alert, evaluate_alerts
from vzkeep.plan import plan_stack
from vzkeep.pve.privileges import EXPORTER_ROLE_PRIVILEGES

NOW = 1_795_000_000
# pve-access-control src/PVE/AccessControl.pm: PVEAuditor holds the "audit" privileges of every group.
PVE_AUDITOR = ("Sys.Audit", "VM.Audit", "VM.GuestAgent.Audit", "Datastore.Audit", "Pool.Audit", "SDN.Audit",
               "Mapping.Audit")
TOKEN = "monitoring@pve!exporter"


def as_seen_by(privileges: tuple[str, ...] | frozenset[str]) -> FakeApi:
    """The cluster as PVE shows it to a token holding ``privileges`` on ``/`` (propagated)."""
    answers = build(9, 3, NOW)
    paths = ["/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"]
    paths += [f"/vms/{r['vmid']}" for r in answers["cluster/resources"] if "vmid" in r and r.get("pool")]
    answers["access/permissions"] = {p: {priv: 1 for priv in privileges} for p in paths}
    if not {"Datastore.AllocateSpace", "VM.Backup"} <= set(privileges):
        for path in [p for p in answers if p.endswith("/content")]:
            answers[path] = []  # every volume fails check_volume_access: 200, empty list
    return FakeApi(answers)


def samples(snapshot: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(render(snapshot).decode()):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def alerts_now(exporter: Exporter) -> list[Alert]:
    """The alerts of prod's rules and the global ones, as a real Prometheus evaluates them (no ``for`` wait)."""
    thresholds = plan_stack(load_stack_file(stack_file("prod"))).thresholds
    documents = [rules.env_rules_document(thresholds), rules.global_rules_document()]
    for document in documents:
        for group in document["groups"]:
            for rule in group["rules"]:
                if rules.prom_duration(48 * 3600) != rule.get("for"):  # "never" cases keep their 48 h
                    rule.pop("for", None)
    return evaluate_alerts([yaml.safe_dump(d) for d in documents], exporter.address, timeout=60)


@pytest.fixture(scope="module")
def auditor() -> Iterator[Exporter]:
    with Exporter(Poller(as_seen_by(PVE_AUDITOR), authid=TOKEN), "127.0.0.1:0", interval=3600) as exporter:
        wait_until(lambda: exporter.loop.polls > 0, 10, "the first poll")
        yield exporter


def test_the_auditor_token_is_told_what_it_lacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vzkeep.exporter")
    poller = Poller(as_seen_by(PVE_AUDITOR), authid=TOKEN)
    snapshot = poller.poll()
    missing = {(labels["privilege"], labels["path"]) for labels, _ in samples(snapshot)["vzkeep_missing_privilege"]}
    assert missing == {("Datastore.AllocateSpace", "/storage"), ("VM.Backup", "/vms")}
    lines = [r.getMessage() for r in caplog.records if "missing PVE privilege" in r.getMessage()]
    assert len(lines) == 2, lines
    backup = next(line for line in lines if line.startswith("missing PVE privilege VM.Backup"))
    assert "on /vms:" in backup
    assert f"pveum acl modify /vms --tokens '{TOKEN}' --roles VzkeepExporter" in backup
    assert "pveum role add VzkeepExporter --privs" in backup
    # Said once, not at every poll; said again the other way round when granted.
    caplog.clear()
    poller.poll()
    assert not [r for r in caplog.records if "missing PVE privilege" in r.getMessage()]
    poller.get = as_seen_by(EXPORTER_ROLE_PRIVILEGES)
    granted = poller.poll()
    assert granted.missing_privileges == ()
    assert sum("is granted now" in r.getMessage() for r in caplog.records) == 2


def test_the_auditor_sees_no_backup_and_the_job_says_so(auditor: Exporter) -> None:
    snapshot = auditor.poller.snapshot
    prod = next(j for j in snapshot.jobs if j.id == "vzkeep-prod")
    assert prod.last_status is True, "its runs ended OK"
    assert (prod.guests, prod.guests_listed) == (3, 0)
    assert all(a.count == 0 for a in snapshot.archives)


def test_tasks_ok_but_nothing_listed_alerts(auditor: Exporter) -> None:
    firing = {(a.name, a.labels.get("job", a.labels.get("path", ""))) for a in alerts_now(auditor)
              if a.state == "firing"}
    assert ("BackupsNotListed", "vzkeep-prod") in firing
    assert ("VzkeepExporterMissingPrivilege", "/vms") in firing
    assert ("VzkeepExporterMissingPrivilege", "/storage") in firing


def test_the_documented_role_sees_every_backup() -> None:
    snapshot = Poller(as_seen_by(EXPORTER_ROLE_PRIVILEGES), authid=TOKEN).poll()
    assert snapshot.up and snapshot.missing_privileges == ()
    assert all((j.guests_listed, j.last_status) == (j.guests, True) for j in snapshot.jobs if j.guests)
    covered = [g for g in snapshot.guests if snapshot.covered[g.vmid]]
    listed = {a.vmid for a in snapshot.archives if a.count == 3}
    assert covered and {g.vmid for g in covered} == listed
    with Exporter(Poller(as_seen_by(EXPORTER_ROLE_PRIVILEGES)), "127.0.0.1:0", interval=3600) as exporter:
        wait_until(lambda: exporter.loop.polls > 0, 10, "the first poll")
        names = {a.name for a in alerts_now(exporter) if a.state == "firing"}
    assert not names & {"BackupsNotListed", "VzkeepExporterMissingPrivilege"}
