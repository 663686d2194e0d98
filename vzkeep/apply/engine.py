"""``vzkeep sandbox apply``: what ``pulumi up`` of a stack would do to a cluster, done to the sandbox.

1. The stack file is read and checked (``vzkeep.config``), then pointed at the sandbox
   (``vzkeep.apply.substitute``: its URL and token, throwaway values for unset secrets).
2. *Preview*: the real ``__main__.py`` runs under Pulumi's mocks (``vzkeep.preview``) with a
   ``Planner`` that decides each resource's step against the stack's applied state; what the state
   holds and the program no longer declares is to be deleted (dependents first).
3. Nothing changes unless everything can: a protected resource to delete or replace, or a create that
   the cluster cannot take (pre-flight, ``vzkeep.apply.preflight``), stops the apply here.
4. *Up*: the program runs again with an ``Applier`` that carries each step out as the provider
   would (``vzkeep.apply.resources``), then the deletions run. The state file is rewritten after
   every step; the first failure ends the apply with PVE's message, keeping what was done.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.apply.http import Transport
from vzkeep.apply.plan import CREATE, DELETE, NOT_APPLIED, READ, REPLACE, SAME, UPDATE, deletions, protected_changes
from vzkeep.apply.preflight import problems as preflight_problems
from vzkeep.apply.provision import Applier, Event, Failure, Planner
from vzkeep.apply.resources.base import Api, ClusterView, Context, TaskWait
from vzkeep.apply.resources.bucket import S3_SERVICE, S3StandIn
from vzkeep.apply.state import APPLY_DIR, StateFile
from vzkeep.apply.substitute import Substitution, for_sandbox, where_used
from vzkeep.apply.transport import SandboxInfo, SandboxTransport
from vzkeep.config import load_stack_document, project_root, settings_from_document, stack_file_values
from vzkeep.errors import ExitStatus, FindingError, VzkeepError
from vzkeep.preview import masked, program_root, run_program

Progress = Callable[[str], None]


@dataclass
class ApplyOptions:
    stack: str
    sandbox: Path  # the running sandbox's sandbox.json
    root: Path | None = None  # where Pulumi.<stack>.yaml is (default: the project root)
    dry_run: bool = False
    advance: bool = False  # move a stepped sandbox clock while waiting for PVE tasks
    timeout: float = 300.0  # seconds to wait for one PVE task
    unprotect: frozenset[str] = frozenset()  # resource names or URNs: `pulumi state unprotect`
    progress: Progress = field(default=lambda _msg: None)
    transport: Transport | None = None  # default: the sandbox over HTTPS


@dataclass
class ApplyResult:
    stack: str
    dry_run: bool
    endpoint: str
    events: list[Event]
    substitutions: list[Substitution]
    outputs: dict[str, Any]
    failure: Failure | None = None
    state_file: Path | None = None
    requests: int = 0

    def names(self, op: str) -> list[str]:
        return [e.name for e in self.events if e.op == op]

    @property
    def changed(self) -> bool:
        return any(e.op in (CREATE, UPDATE, REPLACE, DELETE) for e in self.events)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "dry_run": self.dry_run, "endpoint": self.endpoint,
            "created": self.names(CREATE), "updated": self.names(UPDATE), "replaced": self.names(REPLACE),
            "deleted": self.names(DELETE), "unchanged": self.names(SAME), "read": self.names(READ),
            "not_applied": [{"name": e.name, "type": e.type, "reason": e.detail}
                            for e in self.events if e.op == NOT_APPLIED],
            "skipped": self.names("skipped"),
            "failed": None if self.failure is None else {"name": self.failure.name, "type": self.failure.type,
                                                         "message": self.failure.message},
            "substituted": [{"key": s.key, "by": s.by, "used_by": list(s.used_by)} for s in self.substitutions],
            "outputs": self.outputs,
            "requests": self.requests,
        }


class ApplyFailed(FindingError):
    """A step failed (or pre-flight found that the stack does not fit); ``result`` says what was done."""

    def __init__(self, message: str, result: ApplyResult, hint: str | None = None,
                 status: ExitStatus | None = None) -> None:
        super().__init__(message, hint, status=status)
        self.result = result


def apply_stack(options: ApplyOptions) -> ApplyResult:
    info = SandboxInfo.read(options.sandbox)
    root = Path(options.root) if options.root else project_root()
    values, secret_keys, settings = _stack_config(root, options.stack)
    statefile = StateFile(info.directory, options.stack)
    transport = options.transport or SandboxTransport(info)
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")  # the certificate is pinned instead
    with statefile.locked():
        state = statefile.load()
        values, secret_keys, substitutions = for_sandbox(values, secret_keys, info, state)
        statefile.save(state)  # the throwaway secrets, before anything can depend on them
        api = Api(transport, _task_wait(options, transport))
        ctx = Context(pve=api, files_root=info.directory / APPLY_DIR / "delivered",
                      services={S3_SERVICE: S3StandIn(info.directory / APPLY_DIR / "s3")})
        result = ApplyResult(options.stack, options.dry_run, info.url, [], substitutions, {},
                             state_file=statefile.path)
        try:
            return _run(options, root, values, secret_keys, settings, state, statefile, ctx, result)
        finally:
            statefile.save(state)  # the steps' log folded into the state file
            ctx.services[S3_SERVICE].stop()
            result.requests = len(api.sent)


def _run(options: ApplyOptions, root: Path, values: dict[str, str], secret_keys: set[str], settings: Any,
         state: Any, statefile: StateFile, ctx: Context, result: ApplyResult) -> ApplyResult:
    say = options.progress
    program = program_root(root / f"Pulumi.{options.stack}.yaml")
    say(f"previewing stack {options.stack} against {result.endpoint}")
    planner = Planner(state, ctx, set(options.unprotect))
    preview = run_program(options.stack, values, secret_keys, root=program, settings=settings,
                          provisioner=planner, dry_run=True)
    result.substitutions = where_used(result.substitutions,
                                      {**planner.provider_names, **{s.name: s.inputs for s in planner.steps}})
    deletes = deletions(state, planner.declared)
    refused = protected_changes(planner.steps, deletes, set(options.unprotect))
    if refused:
        result.events = _planned(planner, deletes)
        raise ApplyFailed("a protected resource would be deleted or replaced; nothing was changed:\n  "
                          + "\n  ".join(refused), result,
                          hint="remove `protect` in the program, or pass --unprotect NAME (as `pulumi state "
                               "unprotect`) to allow it")
    say("pre-flight: reading the cluster")
    found = preflight_problems(planner.steps, ClusterView(ctx.pve))
    if found:
        result.events = _planned(planner, deletes)
        raise ApplyFailed("the stack does not fit this sandbox; nothing was changed:\n  " + "\n  ".join(found),
                          result)
    if options.dry_run:
        result.events = _planned(planner, deletes)
        return result
    if not deletes and all(step.op in (SAME, NOT_APPLIED, READ) for step in planner.steps):
        # Nothing to change: the preview already answered with the applied outputs (`pulumi up`: no changes).
        result.events = _planned(planner, deletes)
        result.outputs = _jsonable(masked(preview.outputs))
        return result
    say(f"applying stack {options.stack}")
    applier = Applier(state, ctx, set(options.unprotect), statefile, progress=say)
    run = run_program(options.stack, values, secret_keys, root=program, settings=settings, provisioner=applier,
                      dry_run=False)
    applier.delete_all(deletions(state, applier.declared))
    result.events = applier.events
    result.outputs = _jsonable(masked(run.outputs))
    result.failure = applier.failure
    if applier.failure is not None:
        failure = applier.failure
        status = failure.error.status if isinstance(failure.error, VzkeepError) else None
        raise ApplyFailed(f"{failure.name} ({failure.description}): {failure.message}", result,
                          hint=f"what was applied before it is kept in {statefile.path}; fix the cause and run the "
                               "same apply again", status=status)
    return result


def _planned(planner: Planner, deletes: list[Any]) -> list[Event]:
    events = [Event(step.op, step.name, step.type, step.description,
                    step.reason if step.op == NOT_APPLIED else ", ".join(step.changed))
              for step in planner.steps]
    events += [Event(DELETE, res.name, res.type, res.type) for res in deletes]
    return events


def _task_wait(options: ApplyOptions, transport: Transport) -> TaskWait:
    wait = TaskWait(timeout=options.timeout)
    control = getattr(transport, "control", None)
    if options.advance and control is not None:
        wait.advance = lambda seconds: control("POST", "/advance", seconds=seconds)
    return wait


def _stack_config(root: Path, stack: str) -> tuple[dict[str, str], set[str], Any]:
    """The stack file read as untrusted input (``vzkeep.config``): values, secret keys, checked settings."""
    from vzkeep.plan import plan_stack

    document = load_stack_document(root / f"Pulumi.{stack}.yaml")  # a missing or bad file: ConfigError (exit 2)
    settings = settings_from_document(document)
    plan_stack(settings)
    values, secrets = stack_file_values(document.config)
    return values, secrets, settings


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
