"""Evaluate a policy pack against a mocked program run, without the Pulumi CLI.

The engine hands policies every resource of the stack with its outputs (pulumi-policy `StackValidationArgs`);
under mocks outputs echo inputs, and components' outputs are what they registered. This module
builds those `PolicyResource`s, runs each policy like the analyzer does, and returns verdicts.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from vzkeep.preview import ProgramRun, Registration, is_secret


@dataclass
class Violation:
    message: str
    urn: str | None


@dataclass
class Verdict:
    policy: str
    description: str
    level: str  # "mandatory" | "advisory"
    violations: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations


def unwrap_secrets(value: Any) -> Any:
    """Policies see plain values: the analyzer unwraps secrets before calling them."""
    if is_secret(value):
        return unwrap_secrets(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def props_of(registration: Registration) -> dict[str, Any]:
    props = registration.outputs if not registration.custom else registration.inputs
    return unwrap_secrets(dict(props))


def policy_resources(run: ProgramRun) -> list[PolicyResource]:
    """Every registration as a PolicyResource, parents linked like the engine links them."""
    built: dict[str, PolicyResource] = {}
    for reg in run.registrations:
        opts = PolicyResourceOptions(reg.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
        built[reg.urn] = PolicyResource(reg.type, props_of(reg), reg.urn, reg.name, opts, None, None, [], {})
    for reg in run.registrations:
        parent = built.get(reg.parent)
        if parent is not None:
            built[reg.urn].parent = parent
            built[reg.urn].opts.parent = parent
        built[reg.urn].dependencies = [built[d] for d in reg.dependencies if d in built]
    return list(built.values())


def default_config(policy: Policy) -> dict[str, Any]:
    schema = getattr(policy, "config_schema", None)
    if schema is None:
        return {}
    return {key: spec["default"] for key, spec in schema.properties.items() if "default" in spec}


def evaluate(run: ProgramRun, policies: Sequence[Policy],
             config: Mapping[str, Mapping[str, Any]] | None = None) -> list[Verdict]:
    """Run every policy; `config` is the pack config ({policy name: {key: value}}), merged over defaults."""
    resources = policy_resources(run)
    verdicts = []
    for policy in policies:
        policy_config = {**default_config(policy), **dict((config or {}).get(policy.name, {}))}
        verdict = Verdict(policy=policy.name, description=policy.description, level=_level(policy))

        def report(message: str, urn: str | None = None, verdict: Verdict = verdict) -> None:
            verdict.violations.append(Violation(message=message, urn=urn))

        if isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(resources, policy_config), report)
        elif isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, r.opts, r.provider,
                                              policy_config)
                policy.validate(args, lambda message, urn=None, r=r, report=report: report(message, urn or r.urn))
        verdicts.append(verdict)
    return verdicts


def mandatory_failures(verdicts: Sequence[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.level == "mandatory" and not v.passed]


def _level(policy: Policy) -> str:
    return "advisory" if policy.enforcement_level == EnforcementLevel.ADVISORY else "mandatory"


def load_pack(root: Path) -> ModuleType:
    """Import the project's policy pack module (`<root>/policies/backup_policies.py`)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("policies.backup_policies")
