"""The engine's side of the program's registrations, for ``pulumi preview`` (``Planner``) and ``up`` (``Applier``).

The program runs twice under Pulumi's mocks, as ``pulumi up`` previews then applies. Both passes
decide each registration's step the same way (``vzkeep.apply.plan.decide``). The ``Planner`` changes
nothing: an unchanged resource answers with its applied outputs, anything else with its inputs and
unknowns, as a preview does. The ``Applier`` carries the step out (one at a time, in the order the
program's dependencies allow), records it in the state file after every step and answers with
what the provider returned, so that a token's value reaches the files that need it. After a
failure it applies nothing more: later registrations are answered with their inputs and listed as
skipped, as ``pulumi up`` stops scheduling steps after an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from vzkeep.apply.http import PveHttpError
from vzkeep.apply.plan import CREATE, DELETE, NOT_APPLIED, READ, REPLACE, SAME, UPDATE, Step, decide
from vzkeep.apply.registry import is_provider, kind_of
from vzkeep.apply.resources.base import Applied, Context, NotApplied, ProviderError
from vzkeep.apply.state import Pending, ResourceState, StackState, StateFile
from vzkeep.apply.values import as_secret, plain, secret_keys
from vzkeep.errors import VzkeepError
from vzkeep.preview import Registration

Progress = Callable[[str], None]


@dataclass
class Event:
    """One line of the apply's story: what happened to a resource."""

    op: str  # create | update | replace | same | delete | read | not-applied | skipped | failed
    name: str
    type: str
    description: str
    detail: str = ""


@dataclass
class Failure:
    name: str
    type: str
    description: str
    message: str
    error: BaseException | None = None


class _Provisioner:
    def __init__(self, state: StackState, ctx: Context, unprotect: set[str]) -> None:
        self.state = state
        self.ctx = ctx
        self.unprotect = unprotect
        self.steps: list[Step] = []
        self.events: list[Event] = []
        self.providers: dict[str, dict[str, Any]] = {}  # provider reference (urn::id) -> plain inputs
        self.provider_names: dict[str, dict[str, Any]] = {}  # provider name -> plain inputs
        self.declared: set[str] = set()
        self._lock = threading.Lock()

    def plan(self, reg: Registration) -> Step:
        inputs = plain(reg.inputs)
        kind = kind_of(reg.type)
        step = Step(op=NOT_APPLIED, urn=reg.urn, type=reg.type, name=reg.name, inputs=inputs, kind=kind,
                    protect=reg.protect, dependencies=list(reg.dependencies))
        if reg.read:
            step.op = READ
            return step
        if kind is None:
            step.reason = f"{reg.type} is neither a PVE resource nor one with a local stand-in"
            return step
        try:
            kind.pve_id(inputs)
        except NotApplied as err:
            step.reason = str(err)
            return step
        prior = self.state.resources.get(reg.urn)
        if prior is not None and (reg.name in self.unprotect or reg.urn in self.unprotect):
            prior.protect = False  # `pulumi state unprotect`
        step.prior = prior
        pending = self.state.pending.get(reg.urn)
        if pending is not None and pending.op == CREATE and prior is None:
            step.pending = pending
        step.op, step.changed = decide(kind, inputs, prior)
        return step

    def register(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        if is_provider(reg.type):
            resource_id = "sandbox"
            with self._lock:
                self.providers[f"{reg.urn}::{resource_id}"] = plain(reg.inputs)
                self.provider_names[reg.name] = self.providers[f"{reg.urn}::{resource_id}"]
            return resource_id, dict(reg.inputs)
        if not reg.custom:
            return "", dict(reg.inputs)
        with self._lock:
            self.declared.add(reg.urn)
            step = self.plan(reg)
            step.provider = reg.provider
            self.steps.append(step)
            ctx = replace(self.ctx, provider=self.providers.get(reg.provider, {}))
        # Steps run in parallel, as Pulumi's do: the program registers from several threads, each
        # registration waits for what it depends on, and the state is changed under a lock.
        return self.carry_out(step, reg, ctx)

    def carry_out(self, step: Step, reg: Registration, ctx: Context) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def answer(self, reg: Registration, resource_id: str, outputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Outputs for the program: an input passed as a secret stays a secret in the outputs."""
        answer = dict(outputs)
        for key in secret_keys(reg.inputs):
            if key in answer:
                answer[key] = as_secret(answer[key])
        return resource_id, answer

    def read_step(self, step: Step, reg: Registration, ctx: Context) -> tuple[str, dict[str, Any]]:
        """``Resource.get``: read from the cluster in both passes (a preview reads too)."""
        assert step.kind is not None
        try:
            found = step.kind.read(ctx, Applied(reg.read_id, {}), {**step.inputs, "resourceId": reg.read_id})
        except (ProviderError, PveHttpError) as err:
            step.reason = str(err)
            found = None
        if found is None:
            step.reason = step.reason or f"{step.kind.title} '{reg.read_id}' does not exist"
            self.events.append(Event("failed", step.name, step.type, step.description, step.reason))
            return reg.read_id, {**reg.inputs, "resourceId": reg.read_id}
        self.events.append(Event(READ, step.name, step.type, step.description))
        return found.id, found.outputs


class Planner(_Provisioner):
    """``pulumi preview``: decides every step, changes nothing."""

    def carry_out(self, step: Step, reg: Registration, ctx: Context) -> tuple[str, dict[str, Any]]:
        if step.op == READ and step.kind is not None:
            return self.read_step(step, reg, ctx)
        if step.op == SAME and step.prior is not None:
            return self.answer(reg, step.prior.id, step.prior.outputs)
        # What is created or changed is known only after the apply: its id and computed outputs are unknown.
        return ("" if step.prior is None else step.prior.id), dict(reg.inputs)


class Applier(_Provisioner):
    """``pulumi up``: carries each step out against the sandbox and the stand-ins."""

    def __init__(self, state: StackState, ctx: Context, unprotect: set[str], statefile: StateFile,
                 progress: Progress = lambda _msg: None) -> None:
        super().__init__(state, ctx, unprotect)
        self.statefile = statefile
        self.progress = progress
        self.failure: Failure | None = None

    def carry_out(self, step: Step, reg: Registration, ctx: Context) -> tuple[str, dict[str, Any]]:
        if self.failure is not None:
            if step.op not in (SAME, NOT_APPLIED):
                self.events.append(Event("skipped", step.name, step.type, step.description,
                                         f"not applied: {self.failure.name} failed first"))
            prior = step.prior
            return self.answer(reg, prior.id, prior.outputs) if prior else ("", dict(reg.inputs))
        if step.op == READ and step.kind is not None:
            return self.read_step(step, reg, ctx)
        if step.op == NOT_APPLIED:
            self.events.append(Event(NOT_APPLIED, step.name, step.type, step.description, step.reason))
            return "", dict(reg.inputs)
        try:
            applied = self._execute(step, ctx)
        except NotApplied as err:
            self.events.append(Event(NOT_APPLIED, step.name, step.type, step.description, str(err)))
            return "", dict(reg.inputs)
        except (ProviderError, PveHttpError, VzkeepError) as err:
            with self._lock:
                self.failure = self.failure or Failure(step.name, step.type, step.description, str(err), err)
            self.events.append(Event("failed", step.name, step.type, step.description, str(err)))
            self.progress(f"  ! {step.name}: {err}")
            prior = step.prior
            return self.answer(reg, prior.id, prior.outputs) if prior else ("", dict(reg.inputs))
        return self.answer(reg, applied.id, applied.outputs)

    # -- the steps ------------------------------------------------------------------------------------

    def _execute(self, step: Step, ctx: Context) -> Applied:
        assert step.kind is not None
        if step.pending is not None:
            self._resume_create(step, ctx)
        if step.op == SAME and step.prior is not None:
            self.events.append(Event(SAME, step.name, step.type, step.description))
            return Applied(step.prior.id, step.prior.outputs)
        self.progress(f"  {_SIGN[step.op]} {step.name}: {step.description} ({_VERB[step.op]})")
        if step.op == REPLACE and step.prior is not None:
            self._delete(step.prior, ctx)
            step.prior = None
        if step.prior is None:
            applied = self._mutate(step, CREATE, step.kind.pve_id(step.inputs),
                                   lambda: step.kind.create(ctx, step.inputs))  # type: ignore[union-attr]
        else:
            prior = step.prior
            applied = self._mutate(step, UPDATE, prior.id, lambda: step.kind.update(  # type: ignore[union-attr]
                ctx, Applied(prior.id, prior.outputs), prior.inputs, step.inputs))
        self.events.append(Event(step.op, step.name, step.type, step.description, ", ".join(step.changed)))
        return applied

    def _resume_create(self, step: Step, ctx: Context) -> None:
        """A create the last apply started: if the cluster has it, take it as created, then diff again."""
        assert step.kind is not None and step.pending is not None
        pending = step.pending
        try:
            found = step.kind.read(ctx, Applied(pending.id, {}), pending.inputs)
        except (ProviderError, PveHttpError):
            found = None  # not readable as the provider reads it (a job's "No such job" is a 400): create it
        with self._lock:
            if found is not None:
                prior = ResourceState(urn=step.urn, type=step.type, name=step.name, id=found.id,
                                      inputs=pending.inputs, outputs=found.outputs, protect=step.protect,
                                      dependencies=step.dependencies, provider=step.provider)
                self.state.resources[step.urn] = prior
                self.statefile.record("done", prior)
                step.prior = prior
                step.op, step.changed = decide(step.kind, step.inputs, prior)
                self.progress(f"  = {step.name}: found on the cluster, created by the interrupted apply")
            else:
                self.statefile.record("cleared", step.urn)
            self.state.pending.pop(step.urn, None)

    def _mutate(self, step: Step, op: str, pve_id: str, call: Callable[[], Applied]) -> Applied:
        """Note the step as pending, call, then record the result: a stop in between is found next time."""
        with self._lock:
            note = Pending(step.urn, op, step.type, step.name, pve_id, step.inputs)
            self.state.pending[step.urn] = note
            self.statefile.record("pending", note)
        applied = call()
        with self._lock:
            done = ResourceState(urn=step.urn, type=step.type, name=step.name, id=applied.id, inputs=step.inputs,
                                 outputs=applied.outputs, protect=step.protect, dependencies=step.dependencies,
                                 provider=step.provider)
            self.state.resources[step.urn] = done
            self.state.pending.pop(step.urn, None)
            self.statefile.record("done", done)
        return applied

    def delete_all(self, deletes: list[ResourceState]) -> None:
        """What the program no longer declares, in the order ``plan.deletions`` gives."""
        for res in deletes:
            if self.failure is not None:
                self.events.append(Event("skipped", res.name, res.type, res.type,
                                         "not deleted: an earlier step failed"))
                continue
            kind = kind_of(res.type)
            description = _describe(kind, res)
            if kind is None:
                self.events.append(Event(NOT_APPLIED, res.name, res.type, description,
                                         f"{res.type} has no delete here; remove it by hand"))
                continue
            self.progress(f"  - {res.name}: {description} (deleting)")
            try:
                self._delete(res, replace(self.ctx, provider=self.providers.get(res.provider, {})))
            except NotApplied as err:
                self.events.append(Event(NOT_APPLIED, res.name, res.type, description, str(err)))
                continue
            except (ProviderError, PveHttpError, VzkeepError) as err:
                self.failure = Failure(res.name, res.type, description, str(err), err)
                self.events.append(Event("failed", res.name, res.type, description, str(err)))
                continue
            self.events.append(Event(DELETE, res.name, res.type, description))

    def _delete(self, res: ResourceState, ctx: Context) -> None:
        kind = kind_of(res.type)
        assert kind is not None
        with self._lock:
            note = Pending(res.urn, DELETE, res.type, res.name, res.id, res.inputs)
            self.state.pending[res.urn] = note
            self.statefile.record("pending", note)
        kind.delete(ctx, Applied(res.id, res.outputs), res.inputs)
        with self._lock:
            self.state.resources.pop(res.urn, None)
            self.state.pending.pop(res.urn, None)
            self.statefile.record("deleted", res.urn)


def _describe(kind: Any, res: ResourceState) -> str:
    if kind is None:
        return res.type
    try:
        return str(kind.describe(res.inputs))
    except (KeyError, TypeError, NotApplied):
        return str(kind.title)


_SIGN = {CREATE: "+", UPDATE: "~", REPLACE: "+-", DELETE: "-"}
_VERB = {CREATE: "creating", UPDATE: "updating", REPLACE: "replacing", DELETE: "deleting"}
