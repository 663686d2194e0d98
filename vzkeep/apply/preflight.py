"""Does the stack fit this cluster? Found by reading only, before anything is changed.

Every resource the apply would create is checked against what the cluster already has (one GET per
list: nodes, guests, storages, pools, jobs, users, roles, tokens): an unknown node, a vmid taken, an
id in use (by another type or not by this stack), a pool, storage or role that neither exists nor is
declared. A problem is worded as PVE would answer the create, so the apply can stop before its
first change instead of halfway. A create resumed from an interrupted apply is not checked: the
cluster may already hold it, and the apply takes it over.
"""

from __future__ import annotations

from vzkeep.apply.plan import CREATE, READ, Step
from vzkeep.apply.resources.base import ClusterView, Declared
from vzkeep.apply.values import has_unknown


def declared_by(steps: list[Step]) -> Declared:
    declared = Declared()
    for step in steps:
        if step.kind is not None and step.op not in (READ,) and not step.reason:
            try:
                step.kind.declare(step.inputs, declared)
            except (KeyError, TypeError):
                continue
    return declared


def problems(steps: list[Step], view: ClusterView) -> list[str]:
    declared = declared_by(steps)
    found = []
    for step in steps:
        if step.op == READ and step.reason:
            found.append(f"{step.name} ({step.description}): {step.reason}")
        if step.op != CREATE or step.kind is None or step.pending is not None or step.reason:
            continue
        known = {k: v for k, v in step.inputs.items() if not has_unknown(v)}
        try:
            step_problems = step.kind.preflight(known, view, declared)
        except KeyError:  # an input known only during the apply: PVE will judge it then
            continue
        found += [f"{step.name} ({step.description}): {problem}" for problem in step_problems]
    return found
