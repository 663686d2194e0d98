"""The stack's config, pointed at this sandbox: its endpoint, its token, throwaway values for other secrets.

A stack file names the real cluster and keeps its secrets encrypted (or not at all, until
``pulumi config set --secret``). For an apply to the sandbox, ``proxmoxve:endpoint`` becomes the
sandbox's URL and ``proxmoxve:apiToken`` its admin token; every other credential the program reads
(``vzkeep:*`` in ``vzkeep.config.CREDENTIAL_KEYS``) that the stack has not set in clear gets a
throwaway value, generated once and kept in the stack's applied state (0600) so that a second apply
sees the same value. Values are never printed: the report names the key and what replaced it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from vzkeep.apply.state import StackState
from vzkeep.apply.transport import SandboxInfo
from vzkeep.config import CREDENTIAL_KEYS, PROJECT, SECRET_PLACEHOLDER

ENDPOINT, TOKEN = "proxmoxve:endpoint", "proxmoxve:apiToken"


@dataclass(frozen=True)
class Substitution:
    key: str
    by: str  # what replaced it, for the report (never the value)
    value: str = field(default="", repr=False)  # to find where it went; never printed
    used_by: tuple[str, ...] = ()


def where_used(subs: list[Substitution], inputs_by_name: dict[str, Any]) -> list[Substitution]:
    """Each throwaway value with the resources whose inputs hold it; the ones nothing read are left out."""
    texts = {name: json.dumps(inputs, default=str, sort_keys=True) for name, inputs in inputs_by_name.items()}
    found = []
    for sub in subs:
        if not sub.value:
            found.append(sub)
            continue
        users = tuple(sorted(name for name, text in texts.items() if sub.value in text))
        if users:
            found.append(replace(sub, used_by=users))
    return found


def for_sandbox(values: dict[str, str], secret_keys: set[str], info: SandboxInfo,
                state: StackState) -> tuple[dict[str, str], set[str], list[Substitution]]:
    values, secret_keys = dict(values), set(secret_keys)
    done: list[Substitution] = []
    if values.get(ENDPOINT) != info.url:
        done.append(Substitution(ENDPOINT, f"this sandbox's URL {info.url} (was {values.get(ENDPOINT, 'unset')})"))
        values[ENDPOINT] = info.url
    values[TOKEN] = info.token
    secret_keys.add(TOKEN)
    done.append(Substitution(TOKEN, "the sandbox's admin token (from sandbox.json)"))
    for key in sorted(k for k in CREDENTIAL_KEYS if k.startswith(f"{PROJECT}:")):
        if key in values and values[key] != SECRET_PLACEHOLDER:
            continue  # set in clear in the stack file: the program gets it as written
        why = "encrypted in the stack file" if key in values else "not set in the stack"
        if key not in state.secrets:
            state.secrets[key] = secrets.token_urlsafe(32)
        values[key] = state.secrets[key]
        secret_keys.add(key)
        done.append(Substitution(key, f"a throwaway value ({why}; kept in the sandbox's apply state)",
                                 value=state.secrets[key]))
    return values, secret_keys, done
