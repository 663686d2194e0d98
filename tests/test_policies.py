"""The policy pack against the real program of each stack, one mutation per rule, and through the analyzer."""

from __future__ import annotations

import copy

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer
from typer.testing import CliRunner

from policies.backup_policies import PACK_NAME, POLICIES
from tests.helpers.stacks import DELETE, ROOT, STACKS, mutated, write_stack
from vzkeep.cli import app
from vzkeep.policy_check import evaluate, mandatory_failures, props_of
from vzkeep.preview import ProgramRun, Registration, run_stack_file

JOB = "proxmoxve:backup/job:Job"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
CT = "proxmoxve:index/containerLegacy:ContainerLegacy"


@pytest.fixture(scope="module")
def runs() -> dict[str, ProgramRun]:
    return {name: run_stack_file(ROOT / f"Pulumi.{name}.yaml") for name in STACKS}


def failing(run: ProgramRun) -> dict[str, list[str]]:
    return {v.policy: [x.message for x in v.violations] for v in evaluate(run, POLICIES) if not v.passed}


def with_changes(run: ProgramRun, type_token: str, **inputs: object) -> ProgramRun:
    """Change the inputs of every resource of a type (for jobs: the environment's main job only)."""
    changed = copy.deepcopy(run)
    for reg in changed.registrations:
        if reg.type == type_token and (type_token != JOB or reg.inputs["resourceId"] == f"vzkeep-{run.stack}"):
            for key, value in inputs.items():
                if value is DELETE:
                    reg.inputs.pop(key, None)
                else:
                    reg.inputs[key] = value
    return changed


def with_guest(run: ProgramRun, type_token: str, resource_name: str, **inputs: object) -> ProgramRun:
    changed = copy.deepcopy(run)
    env = changed.one("vzkeep:backup:BackupEnvironment")
    changed.registrations.append(Registration(
        type=type_token, name=resource_name, urn=f"urn:pulumi:{run.stack}::vzkeep::{type_token}::{resource_name}",
        inputs=dict(inputs), custom=True, parent=env.urn))
    return changed


@pytest.mark.parametrize("name", STACKS)
def test_shipped_stacks_pass_every_policy(runs, name):
    assert failing(runs[name]) == {}


@pytest.mark.parametrize("name", STACKS)
def test_coverage_counts_every_inventory_guest(runs, name):
    from policies.backup_policies import coverage
    from vzkeep.policy_check import policy_resources

    result = coverage(policy_resources(runs[name]))
    declared = len(runs[name].of_type(CT)) + len(runs[name].of_type(VM))
    total = len(runs[name].settings.inventory) + declared
    assert result.summary() == f"{total}/{total} guests covered"


def test_vm_outside_the_environments_pool(runs):
    run = with_guest(runs["prod"], VM, "stray", vmId=150, nodeName="pve1", poolId="lab", name="stray")
    failures = failing(run)
    assert list(failures) == ["every-guest-covered"]
    assert "VM 150 'stray'" in failures["every-guest-covered"][0]
    assert "put it in pool 'prod'" in failures["every-guest-covered"][0]


def test_vm_excluded_from_an_all_job(runs):
    run = with_guest(runs["prod"], VM, "db2", vmId=151, nodeName="pve1", name="db2")
    run = with_changes(run, JOB, all=True, excludes=["151"], pool=DELETE)
    failures = failing(run)
    assert list(failures) == ["every-guest-covered"]
    assert "excludes it" in failures["every-guest-covered"][0] and "151" in failures["every-guest-covered"][0]


def test_vm_covered_only_by_a_disabled_job(runs):
    run = with_changes(runs["lab"], JOB, enabled=False)
    failures = failing(run)
    assert list(failures) == ["every-guest-covered"]
    assert all("disabled job 'vzkeep-lab'" in m for m in failures["every-guest-covered"])
    assert len(failures["every-guest-covered"]) == len(runs["lab"].settings.inventory)


def test_job_restricted_to_another_node(runs):
    run = with_changes(runs["lab"], JOB, node="pve1")  # lab's guests run on pve2
    failures = failing(run)
    assert list(failures) == ["every-guest-covered"]
    assert "runs only on node 'pve1'" in failures["every-guest-covered"][0]


def test_inventory_guest_in_no_job_from_the_stack_file(tmp_path):
    inventory = mutated("lab", {})["config"]["vzkeep:inventory"] + [
        {"vmid": 299, "name": "forgotten-vm", "type": "qemu", "pool": "staging"}]
    path = write_stack(tmp_path, "lab", mutated("lab", {"vzkeep:inventory": inventory}))
    failures = failing(run_stack_file(path, root=ROOT))
    assert list(failures) == ["every-guest-covered"]
    assert "VM 299 'forgotten-vm' (listed in vzkeep:inventory)" in failures["every-guest-covered"][0]


def test_guest_without_vmid_cannot_be_proven(runs):
    run = with_guest(runs["prod"], CT, "newct", nodeName="pve1", poolId="prod")
    failures = failing(run)
    assert list(failures) == ["every-guest-covered"]
    assert "cannot be proven" in failures["every-guest-covered"][0]


def test_keep_all_is_rejected(runs):
    failures = failing(with_changes(runs["lab"], JOB, pruneBackups={"keep-all": "1"}))
    assert list(failures) == ["retention-required"]
    assert "keep-all" in failures["retention-required"][0]


def test_missing_retention_is_rejected(runs):
    failures = failing(with_changes(runs["lab"], JOB, pruneBackups=DELETE))
    assert list(failures) == ["retention-required"]


def test_retention_below_the_floor_of_the_stack_file(runs):
    failures = failing(with_changes(runs["prod"], JOB, pruneBackups={"keep-daily": "2", "keep-weekly": "4"}))
    assert list(failures) == ["retention-floor"]
    [message] = failures["retention-floor"]
    assert "keep-daily=2" in message and "vzkeep:policy.retentionFloor keep-daily=3" in message


def test_reducing_prod_from_7_to_3_is_one_line_of_the_stack_file(tmp_path):
    """The README's edge case: keepDaily 7 -> 3 passes every policy (prod's floor is 3 daily)."""
    lines = (ROOT / "Pulumi.prod.yaml").read_text().splitlines(keepends=True)
    [index] = [i for i, line in enumerate(lines) if "retention: {keepDaily: 7" in line]
    lines[index] = lines[index].replace("keepDaily: 7", "keepDaily: 3")
    (tmp_path / "Pulumi.prod.yaml").write_text("".join(lines))
    run = run_stack_file(tmp_path / "Pulumi.prod.yaml", root=ROOT)
    assert run.job().inputs["pruneBackups"]["keep-daily"] == "3"
    assert failing(run) == {}


def test_without_a_floor_in_the_stack_file_prod_keeps_the_packs_floor(tmp_path):
    path = write_stack(tmp_path, "prod", mutated("prod", {"vzkeep:policy": DELETE,
                                                          "vzkeep:backup.retention.keepDaily": 3}))
    failures = failing(run_stack_file(path, root=ROOT))
    assert list(failures) == ["retention-floor"]
    assert "the policy pack's floor keep-daily=7" in failures["retention-floor"][0]


def test_retention_floor_is_configurable(runs):
    run = with_changes(runs["lab"], JOB, pruneBackups={"keep-daily": "3"})
    verdicts = evaluate(run, POLICIES, {"retention-floor": {"defaultMinimumTotal": 5}})
    assert [v.policy for v in verdicts if not v.passed] == ["retention-floor"]


def test_job_on_local_storage(runs):
    failures = failing(with_changes(runs["prod"], JOB, storage="local"))
    assert list(failures) == ["dedicated-storage"]
    assert "'local' is the node's own storage" in failures["dedicated-storage"][0]


def test_schedule_starting_outside_the_window(runs):
    failures = failing(with_changes(runs["lab"], JOB, schedule="12:00"))
    assert list(failures) == ["schedule-in-window"]
    assert "starts at" in failures["schedule-in-window"][0] and "12:00" in failures["schedule-in-window"][0]
    assert "01:00–06:00" in failures["schedule-in-window"][0]


def test_plaintext_api_token_from_the_stack_file(tmp_path):
    path = write_stack(tmp_path, "lab", mutated("lab", {"proxmoxve:apiToken": "vzkeep@pve!pulumi=plain-secret"}))
    failures = failing(run_stack_file(path, root=ROOT))
    assert list(failures) == ["no-plaintext-secrets"]
    assert "proxmoxve:apiToken" in failures["no-plaintext-secrets"][0]
    assert "plain-secret" not in failures["no-plaintext-secrets"][0]


def test_secret_api_token_passes(tmp_path):
    path = write_stack(tmp_path, "lab", mutated("lab", {"proxmoxve:apiToken": {"secure": "v1:abc"}}))
    assert failing(run_stack_file(path, root=ROOT)) == {}


def test_unversioned_state_bucket(runs):
    run = with_guest(runs["monitoring"], "minio:index/s3Bucket:S3Bucket", "state2", bucket="other-state",
                     acl="private")
    failures = failing(run)
    assert list(failures) == ["versioned-state-bucket"]
    assert "'other-state' has versioning not configured" in failures["versioned-state-bucket"][0]


def test_public_state_bucket(runs):
    run = with_changes(runs["monitoring"], "minio:index/s3Bucket:S3Bucket", acl="public-read")
    failures = failing(run)
    assert list(failures) == ["versioned-state-bucket"]
    assert "acl 'public-read'" in failures["versioned-state-bucket"][0]


def test_advisory_rules_report_without_failing(runs):
    run = with_changes(runs["lab"], JOB, mode="suspend", repeatMissed=True)
    verdicts = evaluate(run, POLICIES)
    assert {v.policy for v in verdicts if not v.passed} == {"consistent-mode", "missed-runs-not-caught-up"}
    assert mandatory_failures(verdicts) == []


# ---------------------------------------------------------------------------------------------
# Through the analyzer service, with protobuf requests shaped like the engine's


def _struct(props: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(props)
    return struct


def analyze_like_the_engine(run: ProgramRun) -> list[tuple[str, str]]:
    servicer = _PolicyAnalyzerServicer(name=PACK_NAME, version="0.1.0", policies=POLICIES,
                                       enforcement_level=EnforcementLevel.MANDATORY)
    stack_request = proto.AnalyzeStackRequest(resources=[
        proto.AnalyzerResource(type=r.type, name=r.name, urn=r.urn, properties=_struct(props_of(r)),
                               parent=r.parent, dependencies=r.dependencies)
        for r in run.registrations
    ])
    diagnostics = list(servicer.AnalyzeStack(stack_request, None).diagnostics)
    for r in run.registrations:
        request = proto.AnalyzeRequest(type=r.type, name=r.name, urn=r.urn, properties=_struct(props_of(r)))
        diagnostics += list(servicer.Analyze(request, None).diagnostics)
    return [(d.policyName, d.message) for d in diagnostics]


def test_analyzer_service_passes_the_real_program(runs):
    assert analyze_like_the_engine(runs["prod"]) == []


def test_analyzer_service_reports_an_uncovered_guest(runs):
    run = with_guest(runs["prod"], VM, "stray", vmId=150, nodeName="pve1", poolId="lab", name="stray")
    diagnostics = analyze_like_the_engine(run)
    assert [name for name, _ in diagnostics] == ["every-guest-covered"]
    assert "VM 150 'stray'" in diagnostics[0][1]


def test_analyzer_service_runs_resource_policies(runs):
    diagnostics = analyze_like_the_engine(with_changes(runs["lab"], JOB, pruneBackups={"keep-all": "1"}))
    assert [name for name, _ in diagnostics] == ["retention-required"]


# ---------------------------------------------------------------------------------------------
# vzkeep preview shows the verdicts


runner = CliRunner()


def test_preview_prints_verdicts_and_coverage():
    result = runner.invoke(app, ["preview", "--stack", "prod"])
    assert result.exit_code == 0, result.output
    assert "5/5 guests covered" in result.output
    for policy in POLICIES:
        assert policy.name in result.output


def test_preview_exits_1_naming_an_uncovered_inventory_guest(tmp_path):
    inventory = mutated("prod", {})["config"]["vzkeep:inventory"] + [
        {"vmid": 199, "name": "jellyfin", "type": "lxc", "pool": "media"}]
    write_stack(tmp_path, "prod", mutated("prod", {"vzkeep:inventory": inventory}))
    result = runner.invoke(app, ["preview", "--stack", "prod", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "CT 199 'jellyfin'" in result.output.replace("\n", " ")
    assert "5/6 guests covered" in result.output


def test_offsite_job_is_exempt_from_the_local_floor_whatever_its_storage_id(tmp_path):
    path = write_stack(tmp_path, "prod", mutated("prod", {"vzkeep:remote.storageId": "nas-copies"}))
    run = run_stack_file(path, root=ROOT)
    assert run.job("vzkeep-prod-offsite").inputs["storage"] == "nas-copies"
    assert failing(run) == {}, "weekly/monthly offsite copies need no keep-daily=7"


# ---------------------------------------------------------------------------------------------
# Every guest and membership type of pulumi-proxmoxve


def test_guest_and_membership_types_are_read_from_the_installed_sdk():
    """pulumi-proxmoxve 8.6's guests and memberships (read in its modules); a new SDK adds to these sets."""
    from policies.guest_types import guest_types, membership_types

    known = {
        "proxmoxve:index/vmLegacy:VmLegacy", "proxmoxve:index/containerLegacy:ContainerLegacy",
        "proxmoxve:index/vm:Vm", "proxmoxve:index/vm2Legacy:Vm2Legacy",
        "proxmoxve:cloned/vm:Vm", "proxmoxve:cloned/vmLegacy:VmLegacy",
    }
    assert known <= set(guest_types())
    assert {"proxmoxve:pool/membership:Membership", "proxmoxve:pool/membershipLegacy:MembershipLegacy"} <= set(
        membership_types())
    assert "proxmoxve:firewall/optionsLegacy:OptionsLegacy" not in guest_types(), "a firewall is not a guest"


def _sdk_guest_classes():
    """Guest-like resources found independently of the pack's rule: a class of the SDK whose docstring
    calls it a VM or a container resource."""
    import importlib
    import inspect
    import pkgutil

    import pulumi
    import pulumi_proxmoxve

    found = set()
    for info in pkgutil.walk_packages(pulumi_proxmoxve.__path__, "pulumi_proxmoxve."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, pulumi.CustomResource) and cls.__module__ == module.__name__:
                token = cls.pulumi_type
                resource = token.rsplit(":", 1)[-1].lower()
                if resource.removesuffix("legacy") in ("vm", "vm2", "container") and "firewall" not in token:
                    found.add(token)
    return found


@pytest.mark.parametrize("token", sorted(_sdk_guest_classes()))
def test_every_guest_type_of_the_sdk_is_held_to_coverage(runs, token):
    """A guest of any SDK type outside the environment's pool is reported with its VM id, whatever the
    property holding that id (vmId, or resourceId as a string)."""
    from policies.guest_types import guest_types

    assert token in guest_types(), f"{token} declares a guest the policy pack does not read"
    vmid_prop = guest_types()[token].vmid_prop
    run = with_guest(runs["prod"], token, "stray", nodeName="pve1", name="stray",
                     **{vmid_prop: 150 if vmid_prop == "vmId" else "150"})
    failures = failing(run)
    assert list(failures) == ["every-guest-covered"]
    kind = "CT" if "container" in token.lower() else "VM"
    assert f"{kind} 150 'stray'" in failures["every-guest-covered"][0]


@pytest.mark.parametrize("membership", ["proxmoxve:pool/membership:Membership",
                                        "proxmoxve:pool/membershipLegacy:MembershipLegacy"])
def test_a_pool_membership_resource_puts_a_guest_in_the_covered_pool(runs, membership):
    run = with_guest(runs["prod"], "proxmoxve:cloned/vm:Vm", "cloned", nodeName="pve1", name="cloned",
                     resourceId="151")
    assert list(failing(run)) == ["every-guest-covered"]
    covered = with_guest(run, membership, "cloned-in-prod", poolId="prod", vmId=151)
    assert failing(covered) == {}
    elsewhere = with_guest(run, membership, "cloned-in-lab", poolId="lab", vmId=151)
    assert "VM 151 'cloned'" in failing(elsewhere)["every-guest-covered"][0]
