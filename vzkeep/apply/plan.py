"""Pulumi's diff, for one resource at a time and for what the program no longer declares.

A declared resource is *created* when the state does not hold it, *unchanged* when its inputs equal
the ones last applied, *replaced* when an input its provider marks ForceNew changed, else *updated*.
A resource in the state that the program no longer declares is *deleted*, dependents before what
they depend on. ``protect`` forbids both a delete and a replace, as in Pulumi: the apply stops before
changing anything and says how to lift it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vzkeep.apply.resources.base import ResourceKind
from vzkeep.apply.state import Pending, ResourceState, StackState
from vzkeep.apply.values import has_unknown

CREATE, UPDATE, REPLACE, SAME, DELETE, READ, NOT_APPLIED = (
    "create", "update", "replace", "same", "delete", "read", "not-applied")


@dataclass
class Step:
    op: str
    urn: str
    type: str
    name: str
    inputs: dict[str, Any]  # plain values, as the provider gets them
    kind: ResourceKind | None = None
    prior: ResourceState | None = None
    changed: list[str] = field(default_factory=list)
    reason: str = ""  # why a resource is not applied
    pending: Pending | None = None  # an interrupted step of a previous apply, to finish
    protect: bool = False
    dependencies: list[str] = field(default_factory=list)
    provider: str = ""  # the provider reference (urn::id) the program gave

    @property
    def description(self) -> str:
        if self.kind is None:
            return self.type
        try:
            return self.kind.describe(self.inputs)
        except (KeyError, TypeError):
            return self.kind.title


def changed_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Top-level inputs that differ (an input still unknown counts as changed)."""
    return sorted(key for key in set(old) | set(new)
                  if has_unknown(new.get(key)) or old.get(key) != new.get(key))


def decide(kind: ResourceKind, inputs: dict[str, Any], prior: ResourceState | None) -> tuple[str, list[str]]:
    if prior is None:
        return CREATE, []
    changed = changed_inputs(prior.inputs, inputs)
    if not changed:
        return SAME, []
    if kind.replace_on & set(changed):
        return REPLACE, changed
    return UPDATE, changed


def deletions(state: StackState, declared: set[str]) -> list[ResourceState]:
    """What the state holds and the program no longer declares, dependents first (then newest first)."""
    gone = {urn: res for urn, res in state.resources.items() if urn not in declared}
    gone.update({urn: _as_state(p) for urn, p in state.pending.items()
                 if p.op == DELETE and urn not in declared and urn not in gone})
    order = list(reversed(list(gone)))
    dependents: dict[str, set[str]] = {urn: set() for urn in gone}
    for urn, res in gone.items():
        for dep in res.dependencies:
            if dep in gone:
                dependents[dep].add(urn)
    result: list[ResourceState] = []
    done: set[str] = set()
    while len(result) < len(gone):
        ready = [urn for urn in order if urn not in done and dependents[urn] <= done]
        if not ready:  # a cycle cannot come from a program, but never loop forever
            ready = [urn for urn in order if urn not in done]
        result.append(gone[ready[0]])
        done.add(ready[0])
    return result


def _as_state(pending: Pending) -> ResourceState:
    return ResourceState(urn=pending.urn, type=pending.type, name=pending.name, id=pending.id,
                         inputs=pending.inputs, outputs={})


def protected_changes(steps: list[Step], deletes: list[ResourceState], unprotect: set[str]) -> list[str]:
    """Pulumi's refusal to delete or replace a protected resource, one line per resource."""
    problems = []
    for res in deletes:
        if res.protect and res.name not in unprotect and res.urn not in unprotect:
            problems.append(f"{res.name}: unable to delete resource {res.urn!r} as it is currently marked for "
                            "protection")
    for step in steps:
        if step.op == REPLACE and step.prior is not None and step.prior.protect and step.name not in unprotect:
            problems.append(f"{step.name}: unable to replace resource {step.urn!r} as it is currently marked "
                            f"for protection (replacing because {', '.join(step.changed)} changed)")
    return problems

