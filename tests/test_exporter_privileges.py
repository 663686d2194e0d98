"""The exporter on a token that may not see backups, as PVE treats a PVEAuditor token, and on the documented role.

PVE lists a backup volume only to a caller with ``Datastore.AllocateSpace`` on the storage and ``VM.Backup`` on
the guest (pve-storage ``src/PVE/Storage.pm`` check_volume_access, applied per volume by
``src/PVE/API2/Storage/Content.pm`` index): the auditor gets HTTP 200 and an empty list. The cluster is first
``fake_pve`` answering as PVE answers each token (``GET /access/permissions`` as pve-access-control's
``get_effective_permissions`` builds it for a role granted on ``/``), then the sandbox itself, whose access
model is PVE's (its ``auditor`` token holds exactly PVEAuditor on ``/``); the rules run in a real Prometheus.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.helpers.fake_pve import FakeApi, fake_cluster, granted_only
from tests.helpers.metrics import samples
from tests.helpers.sandbox import RunningSandbox, running_sandbox
from tests.helpers.waits import wait_until
from vzkeep.config import load_stack_file, stack_file
from vzkeep.exporter import Exporter, Poller, proxmoxer_get, render
from vzkeep.monitoring import rules
from vzkeep.monitoring.alert_preview import Alert, evaluate_alerts
from vzkeep.plan import plan_stack
from vzkeep.pve.privileges import EXPORTER_ROLE_NAME, EXPORTER_ROLE_PRIVILEGES

# pve-access-control src/PVE/AccessControl.pm: PVEAuditor holds the "audit" privileges of every group.
PVE_AUDITOR = ("Sys.Audit", "VM.Audit", "VM.GuestAgent.Audit", "Datastore.Audit", "Pool.Audit", "SDN.Audit",
               "Mapping.Audit")
TOKEN = "monitoring@pve!exporter"
DAY = 86400


def as_seen_by(privileges: tuple[str, ...] | frozenset[str]) -> FakeApi:
    """The cluster as PVE shows it to a token holding ``privileges`` on ``/`` (propagated)."""
    return fake_cluster(change=granted_only(privileges))


def missing_privileges(snapshot: Any) -> set[tuple[str, str]]:
    """(privilege, path) of every ``vzkeep_missing_privilege`` series the snapshot renders."""
    return {(dict(labels)["privilege"], dict(labels)["path"])
            for labels in samples(render(snapshot))["vzkeep_missing_privilege"]}


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
    missing = missing_privileges(snapshot)
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


# -- the same against the sandbox's real access model (pve-access-control's rules, pve-storage's filter) --------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with running_sandbox(tmp_path_factory.mktemp("exporter-privileges")) as sb:
        sb.advance(DAY)  # every job runs once, and its tasks end OK
        sb.advance(3600)
        yield sb


def auditor_id(sb: RunningSandbox) -> str:
    token = sb.info["tokens"]["auditor"]
    return f"{token['user']}!{token['token_name']}"


def admin_counts(sb: RunningSandbox) -> dict[tuple[int, str], int]:
    """(vmid, storage) -> backups, as root sees them on every node (a shared storage once)."""
    admin, seen, counts = sb.client(), set(), Counter()
    for item in admin.get("cluster/resources", type="storage"):
        if "backup" not in str(item.get("content", "")).split(","):
            continue
        for volume in admin.get(f"nodes/{item['node']}/storage/{item['storage']}/content", content="backup"):
            if volume["volid"] not in seen:
                seen.add(volume["volid"])
                counts[(int(volume["vmid"]), item["storage"])] += 1
    return dict(counts)


def test_the_sandboxs_auditor_token_is_told_what_it_lacks_and_backups_not_listed_fires(
        sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vzkeep.exporter")
    token = auditor_id(sandbox)
    poller = Poller(proxmoxer_get(sandbox.api(read_only=True)), authid=token)
    snapshot = poller.poll()
    missing = missing_privileges(snapshot)
    assert missing == {("Datastore.AllocateSpace", "/storage"), ("VM.Backup", "/vms")}
    lines = [r.getMessage() for r in caplog.records if "missing PVE privilege" in r.getMessage()]
    assert len(lines) == 2 and all(f"--tokens '{token}' --roles VzkeepExporter" in line for line in lines), lines
    prod = next(j for j in snapshot.jobs if j.id == "vzkeep-prod")
    assert (prod.last_status, prod.guests_listed) == (True, 0) and prod.guests > 0
    assert admin_counts(sandbox)  # the backups exist: root sees them
    with Exporter(poller, "127.0.0.1:0", interval=3600) as exporter:
        wait_until(lambda: exporter.loop.polls > 0, 10, "the first poll")
        firing = {(a.name, a.labels.get("job", a.labels.get("path", ""))) for a in alerts_now(exporter)
                  if a.state == "firing"}
    assert ("BackupsNotListed", "vzkeep-prod") in firing
    assert {("VzkeepExporterMissingPrivilege", "/vms"), ("VzkeepExporterMissingPrivilege", "/storage")} <= firing


def test_the_documented_role_granted_through_the_access_api_sees_every_backup(sandbox: RunningSandbox) -> None:
    token = auditor_id(sandbox)
    admin = sandbox.client()
    # docs/exporter.md: pveum role add VzkeepExporter --privs '…'; pveum acl modify / --users … --roles …;
    # and the same for the (privilege-separated) token
    admin.post("access/roles", roleid=EXPORTER_ROLE_NAME, privs=",".join(sorted(EXPORTER_ROLE_PRIVILEGES)))
    admin.put("access/acl", path="/", roles=EXPORTER_ROLE_NAME, users=token.split("!")[0])
    admin.put("access/acl", path="/", roles=EXPORTER_ROLE_NAME, tokens=token)
    snapshot = Poller(proxmoxer_get(sandbox.api(read_only=True)), authid=token).poll()
    assert snapshot.up and snapshot.missing_privileges == ()
    seen = {(a.vmid, a.storage): a.count for a in snapshot.archives if a.count}
    assert seen == admin_counts(sandbox)
    assert all(j.guests_listed == j.guests for j in snapshot.jobs if j.guests and j.last_status)
