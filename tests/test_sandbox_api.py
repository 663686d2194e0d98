"""The sandbox's PVE API: shapes, status codes and error bodies as PVE gives them (pve-manager
``PVE/HTTPServer.pm``, pve-http-server ``Formatter/Standard.pm``, the API modules of each route)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.helpers.sandbox import RunningSandbox, running_sandbox

DAY = 86400


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory):
    with running_sandbox(tmp_path_factory.mktemp("api")) as sandbox:
        sandbox.advance(2 * DAY)  # two nights of scheduled backups
        yield sandbox


def call(sb: RunningSandbox, method: str, path: str, token: str | None = "admin", json_body: bool = False,
         headers: dict[str, str] | None = None, **params: Any) -> tuple[int, str, Any]:
    """One raw request: (status, reason phrase, decoded body or b'' when empty)."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = "PVEAPIToken=" + (sb.admin_token if token == "admin" else
                                                  sb.auditor_token if token == "auditor" else token)
    url = sb.url + path if not path.startswith("/_sandbox") else sb.url.replace("/api2/json", "") + path
    kwargs: dict[str, Any] = {"params": params} if method in ("GET", "DELETE") else (
        {"json": params} if json_body else {"data": params})
    reply = requests.request(method, url, headers=hdrs, verify=False, timeout=30, **kwargs)
    body = reply.json() if reply.content else b""
    return reply.status_code, reply.reason, body


# -- shapes -------------------------------------------------------------------------------------------

def test_version_and_cluster_status_shapes(sb) -> None:
    status, _, body = call(sb, "GET", "/version")
    assert status == 200 and set(body["data"]) == {"version", "release", "repoid"}
    entries = call(sb, "GET", "/cluster/status")[2]["data"]
    assert entries[0] == {"type": "cluster", "id": "cluster", "name": "homelab", "nodes": 2, "quorate": 1,
                          "version": 2}
    assert [(e["id"], e["local"], e["online"]) for e in entries[1:]] == [("node/pve1", 1, 1), ("node/pve2", 0, 1)]


def test_cluster_resources_vm_storage_node_pool(sb) -> None:
    everything = call(sb, "GET", "/cluster/resources")[2]["data"]
    assert {e["type"] for e in everything} == {"qemu", "lxc", "storage", "node", "pool"}
    vms = call(sb, "GET", "/cluster/resources", type="vm")[2]["data"]
    postgres = next(v for v in vms if v["vmid"] == 101)
    assert postgres["id"] == "qemu/101" and postgres["pool"] == "prod" and postgres["status"] == "running"
    assert {"maxmem", "mem", "maxdisk", "disk", "uptime", "netin", "netout", "template"} <= set(postgres)
    storages = call(sb, "GET", "/cluster/resources", type="storage")[2]["data"]
    prod = next(s for s in storages if s["id"] == "storage/pve1/backup-prod")
    assert "avail" not in prod and prod["plugintype"] == "dir" and prod["status"] == "available"
    assert prod["disk"] > 0  # two nights of archives
    assert not any(e["type"] == "pool" for e in vms + storages)


def test_pools_and_not_backed_up(sb) -> None:
    assert [p["poolid"] for p in call(sb, "GET", "/pools")[2]["data"]] == ["lab", "monitoring", "prod"]
    assert call(sb, "GET", "/cluster/backup-info/not-backed-up")[2]["data"] == [
        {"vmid": 900, "type": "qemu", "name": "scratch"}]


def test_job_list_decodes_property_strings_and_has_next_run(sb) -> None:
    jobs = {j["id"]: j for j in call(sb, "GET", "/cluster/backup")[2]["data"]}
    prod = jobs["vzkeep-prod"]
    assert prod["type"] == "vzdump" and prod["enabled"] == 1
    assert prod["prune-backups"] == {"keep-daily": "7", "keep-weekly": "4", "keep-monthly": "3"}
    assert prod["next-run"] > sb.sandbox.now() and prod["next-run"] % 3600 == 0
    single = call(sb, "GET", "/cluster/backup/vzkeep-prod")[2]["data"]
    assert "next-run" not in single and single["pool"] == "prod"
    volumes = call(sb, "GET", "/cluster/backup/vzkeep-prod/included_volumes")[2]["data"]["children"]
    assert [c["id"] for c in volumes] == [100, 101, 102, 103, 104]
    assert volumes[0]["children"][0]["id"] == "100:rootfs"


# -- /cluster/backup quirks (pve-manager PVE/API2/Backup.pm) ----------------------------------------------

STRINGIFIED = "400 Parameter verification failed."


@pytest.mark.parametrize(("name", "method", "path", "params", "status", "expect"), [
    ("get unknown id: real 400", "GET", "/cluster/backup/nope", {}, 400, {"id": "No such job 'nope'"}),
    ("delete unknown id: stringified 500", "DELETE", "/cluster/backup/nope", {}, 500,
     f"{STRINGIFIED}\nid: No such job 'nope'\n"),
    ("put unknown id: 500", "PUT", "/cluster/backup/nope", {"mode": "stop"}, 500, "no such vzdump job\n"),
    ("duplicate id: 500", "POST", "/cluster/backup", {"id": "vzkeep-prod", "schedule": "daily", "all": "1"},
     500, "Job 'vzkeep-prod' already exists\n"),
    ("all + vmid: stringified 500", "POST", "/cluster/backup", {"id": "jx", "schedule": "daily", "all": "1",
     "vmid": "100"}, 500, f"{STRINGIFIED}\nall: option conflicts with option 'vmid'\n"),
    ("nothing selected: stringified 500", "POST", "/cluster/backup", {"id": "jx", "schedule": "daily"}, 500,
     f"{STRINGIFIED}\nvmid: property is missing\n"),
    ("no schedule: real 400", "POST", "/cluster/backup", {"id": "jx", "all": "1"}, 400,
     {"schedule": "neither 'starttime' nor 'schedule' were set"}),
    ("unknown parameter: real 400", "POST", "/cluster/backup", {"schedule": "daily", "all": "1", "colour": "red"},
     400, {"colour": "property is not defined in schema and the schema does not allow additional properties"}),
    ("bad boolean: real 400", "POST", "/cluster/backup", {"schedule": "daily", "all": "maybe"}, 400,
     {"all": "type check ('boolean') failed - got 'maybe'"}),
    ("bad enum: real 400", "POST", "/cluster/backup", {"schedule": "daily", "all": "1", "mode": "fast"}, 400,
     {"mode": "value 'fast' does not have a value in the enumeration 'snapshot, suspend, stop'"}),
    ("delete unknown option: stringified 500", "PUT", "/cluster/backup/vzkeep-lab", {"delete": "colour"}, 500,
     f"{STRINGIFIED}\ndelete: unknown option 'colour'\n"),
])
def test_backup_job_errors(sb, name, method, path, params, status, expect) -> None:
    got_status, reason, body = call(sb, method, path, **params)
    assert got_status == status, (name, body)
    assert body["data"] is None
    if isinstance(expect, dict):
        assert body["errors"] == expect and body["message"] == "Parameter verification failed.\n"
        assert reason == "Parameter verification failed."
    else:
        assert body["message"] == expect and "errors" not in body
        assert reason == expect.split("\n")[0]  # the status line carries the first line


def test_bad_schedule_is_a_real_400_with_pve_text(sb) -> None:
    status, _, body = call(sb, "POST", "/cluster/backup", schedule="daily 02:00", all="1")
    assert status == 400
    assert body["errors"]["schedule"].startswith("invalid format - invalid calendar event 'daily 02:00' - ")


def test_job_crud_with_pve_booleans_and_json_body(sb) -> None:
    # The API takes booleans as 1/0 or JSON true/false; "yes" is for the CLI only (JSONSchema.pm check_type).
    assert call(sb, "POST", "/cluster/backup", json_body=True, id="crud", schedule="sun 05:00", vmid="900",
                storage="local", enabled="yes")[2]["errors"] == {"enabled": "type check ('boolean') failed - got 'yes'"}
    assert call(sb, "POST", "/cluster/backup", json_body=True, id="crud", schedule="sun 05:00", vmid="900",
                storage="local", enabled=True)[0] == 200
    assert call(sb, "GET", "/cluster/backup/crud")[2]["data"]["enabled"] == 1
    assert call(sb, "PUT", "/cluster/backup/crud", all="1")[0] == 200
    job = call(sb, "GET", "/cluster/backup/crud")[2]["data"]
    assert job["all"] == 1 and "vmid" not in job  # setting all drops vmid (Backup.pm update)
    assert call(sb, "DELETE", "/cluster/backup/crud")[0] == 200
    assert call(sb, "GET", "/cluster/backup/crud")[0] == 400


def test_vzdump_conflict_is_a_real_400(sb) -> None:
    status, _, body = call(sb, "POST", "/nodes/pve1/vzdump", all="1", vmid="101")
    assert status == 400 and body["errors"] == {"all": "option conflicts with option 'vmid'"}


# -- auth and unknown paths ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "token", "reason"), [
    ("no credentials", None, "No ticket"),
    ("wrong secret", "root@pam!vzkeep=00000000-0000-0000-0000-000000000000", "Authentication failed!"),
    ("garbage header", "nonsense", "Authentication failed!"),
])
def test_unauthorized_is_401_with_empty_body(sb, name, token, reason) -> None:
    status, got_reason, body = call(sb, "GET", "/version", token=token)
    assert (status, got_reason, body) == (401, reason, b"")


def test_auditor_can_read_but_not_write(sb) -> None:
    assert call(sb, "GET", "/cluster/backup", token="auditor")[0] == 200
    status, _, body = call(sb, "POST", "/cluster/backup", token="auditor", schedule="daily", all="1")
    assert status == 403 and body == {"data": None, "message": "Permission check failed (/, Sys.Modify)\n"}
    status, _, body = call(sb, "POST", "/_sandbox/advance", token="auditor", duration="1h")
    assert status == 403


def test_ticket_cookie_needs_csrf_for_writes(sb) -> None:
    login = call(sb, "POST", "/access/ticket", token=None, username="root@pam",
                 password=sb.info["password"]["password"])[2]["data"]
    cookie = {"Cookie": f"PVEAuthCookie={login['ticket']}"}
    assert call(sb, "GET", "/nodes", token=None, headers=cookie)[0] == 200
    assert call(sb, "POST", "/nodes/pve1/qemu/900/status/start", token=None, headers=cookie)[0] == 401
    bad = call(sb, "POST", "/access/ticket", token=None, username="root@pam", password="wrong")
    assert bad[0] == 401


def test_unknown_path_is_501(sb) -> None:
    status, _, body = call(sb, "GET", "/cluster/nonsense")
    assert status == 501 and body["message"] == "Method 'GET /cluster/nonsense' not implemented\n"


# -- nodes, guests, storage, tasks ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "path", "status", "message"), [
    ("unknown node", "/nodes/pve9/status", 500, "hostname lookup 'pve9' failed"),
    ("unknown vmid", "/nodes/pve1/qemu/999/status/current", 500,
     "Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist"),
    ("guest on another node", "/nodes/pve1/qemu/102/config", 500,
     "Configuration file 'nodes/pve1/qemu-server/102.conf' does not exist"),
    ("unknown storage", "/nodes/pve1/storage/nope/status", 400, None),
    ("bad upid", "/nodes/pve1/tasks/UPID:nope/status", 400, None),
])
def test_unknown_objects(sb, name, path, status, message) -> None:
    got, _, body = call(sb, "GET", path)
    assert got == status, name
    if message:
        assert body["message"].startswith(message)
    else:
        assert body["errors"] in ({"storage": "No such storage."}, {"upid": "unable to parse worker upid"})


def test_node_and_guest_shapes(sb) -> None:
    nodes = call(sb, "GET", "/nodes")[2]["data"]
    assert [n["node"] for n in nodes] == ["pve1", "pve2"] and nodes[0]["ssl_fingerprint"] == sb.fingerprint
    status = call(sb, "GET", "/nodes/pve1/status")[2]["data"]
    assert {"memory", "rootfs", "cpuinfo", "uptime", "pveversion"} <= set(status)
    current = call(sb, "GET", "/nodes/pve2/lxc/103/status/current")[2]["data"]
    assert current["vmid"] == 103 and current["status"] == "running" and current["type"] == "lxc"
    config = call(sb, "GET", "/nodes/pve1/qemu/101/config")[2]["data"]
    assert config["name"] == "postgres" and config["memory"] == 4096 and config["scsi0"].endswith("size=32G")


def test_guest_start_stop_are_tasks(sb) -> None:
    upid = call(sb, "POST", "/nodes/pve2/qemu/900/status/start")[2]["data"]
    assert upid.startswith("UPID:pve2:") and ":qmstart:900:root@pam!vzkeep:" in upid
    assert call(sb, "GET", "/nodes/pve2/qemu/900/status/current")[2]["data"]["status"] == "running"
    again = call(sb, "POST", "/nodes/pve2/qemu/900/status/start")[2]["data"]
    sb.advance(5)
    status = call(sb, "GET", f"/nodes/pve2/tasks/{again}/status")[2]["data"]
    assert status["exitstatus"] == "VM 900 already running" and status["tokenid"] == "vzkeep"
    call(sb, "POST", "/nodes/pve2/qemu/900/status/stop")


def test_storage_status_content_and_notes(sb) -> None:
    status = call(sb, "GET", "/nodes/pve1/storage/backup-prod/status")[2]["data"]
    assert status["total"] == 20 * 1024**3 and status["used"] + status["avail"] == status["total"]
    content = call(sb, "GET", "/nodes/pve1/storage/backup-prod/content", content="backup", vmid=101)[2]["data"]
    assert len(content) == 2 and {c["format"] for c in content} == {"vma.zst"}
    volid = content[0]["volid"]
    assert call(sb, "PUT", f"/nodes/pve1/storage/backup-prod/content/{volid}", notes="line one\nline two",
                protected="1")[0] == 200
    info = call(sb, "GET", f"/nodes/pve1/storage/backup-prod/content/{volid}")[2]["data"]
    assert info["notes"] == "line one" and info["protected"] == 1
    # A protected backup still gets an imgdel UPID; the task fails (pve-storage Plugin.pm
    # free_image: `cannot remove protected volume`).
    upid = call(sb, "DELETE", f"/nodes/pve1/storage/backup-prod/content/{volid}")[2]["data"]
    assert ":imgdel:101@backup-prod:" in upid
    sb.advance(1)
    exit_status = call(sb, "GET", f"/nodes/pve1/tasks/{upid}/status")[2]["data"]["exitstatus"]
    assert exit_status.startswith("cannot remove protected volume")


def test_prunebackups_dry_run_and_delete(sb) -> None:
    marks = call(sb, "GET", "/nodes/pve1/storage/backup-lab/prunebackups", **{"prune-backups": "keep-last=1"})
    assert marks[0] == 400 or marks[0] == 500  # backup-lab is not on pve1
    marks = call(sb, "GET", "/nodes/pve2/storage/backup-lab/prunebackups", **{"prune-backups": "keep-last=1"})
    assert marks[0] == 200
    assert {m["mark"] for m in marks[2]["data"]} == {"keep", "remove"}
    upid = call(sb, "DELETE", "/nodes/pve2/storage/backup-lab/prunebackups",
                **{"prune-backups": "keep-last=1"})[2]["data"]
    assert ":prunebackups:" in upid


def test_tasks_listing_log_and_cluster_tasks(sb) -> None:
    status, _, body = call(sb, "GET", "/nodes/pve1/tasks", typefilter="vzdump", limit=2)
    assert status == 200 and len(body["data"]) == 2 and body["total"] >= 4
    upid = body["data"][0]["upid"]
    log = call(sb, "GET", f"/nodes/pve1/tasks/{upid}/log", limit=0)[2]
    assert log["data"][0]["n"] == 1 and log["data"][-1]["t"] == "TASK OK" and log["total"] == len(log["data"])
    cluster_tasks = call(sb, "GET", "/cluster/tasks")[2]["data"]
    assert {t["node"] for t in cluster_tasks} == {"pve1", "pve2"} and len(cluster_tasks) <= 50


def test_schedule_analyze(sb) -> None:
    runs = call(sb, "GET", "/cluster/jobs/schedule-analyze", schedule="sat 02:00 UTC", starttime=0, iterations=2)
    # 1970-01-01 was a Thursday: Saturdays 02:00 after epoch 0 is 2d+2h = 180000, then a week later.
    assert [r["timestamp"] for r in runs[2]["data"]] == [180000, 180000 + 7 * DAY]
    assert runs[2]["data"][0]["utc"] == "Sat Jan  3 02:00:00 1970"
