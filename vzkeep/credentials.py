"""What looks like a credential in a stack's config, so that it is never printed and never left plain.

A secret belongs in ``pulumi config set --secret``; a stack file from a fork may still hold one in
clear, under a known key, under a misspelled one (``telegramBotTokn``) or in a URL
(``https://root:pw@pve1…``). Two questions are asked of each setting:

- ``is_credential(key, value)``: should it be a Pulumi secret? Its name is a known credential key or
  close to one, or says token/secret/password, or its value has a credential's shape (a PVE API
  token, a Telegram bot token, a private key, a URL with a password). The policy pack fails a stack
  that holds one in clear.
- ``hidden(key, value)``: may an error message show it? Not when it is a credential, nor when it
  only might be one.
"""

from __future__ import annotations

import re
from difflib import get_close_matches
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# The stack config keys that hold credentials, in Pulumi's `namespace:key` form.
CREDENTIAL_KEYS = frozenset(
    {"proxmoxve:apiToken", "proxmoxve:password", "minio:minioPassword", "minio:minioSecretKey",
     "vzkeep:telegramBotToken", "vzkeep:s3SecretKey", "vzkeep:sshPrivateKey", "vzkeep:drillApiToken"}
)
HIDDEN = "(hidden: it looks like a credential)"

_CREDENTIAL_NAME = re.compile(r"token|secret|passw|private|credential|api[-_]?key", re.IGNORECASE)
_CREDENTIAL_VALUES = (
    re.compile(r"[^\s@!]+@[^\s@!]+![^\s=]+=\S{8,}"),  # PVE API token USER@REALM!TOKENID=SECRET
    re.compile(r"PVEAPIToken=", re.IGNORECASE),
    re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b"),  # Telegram bot token
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]*@", re.IGNORECASE),  # scheme://user:password@
)
# Shorter shapes that are not worth a policy failure but must not be printed.
_MAYBE_CREDENTIAL_VALUES = (re.compile(r"^\d+:[A-Za-z0-9_-]{3,}"),)  # a Telegram token cut short: 123:ABC…


def is_credential_key(key: str) -> bool:
    """A known credential key, one misspelled (``telegramBotTokn``), or a name that says it is secret."""
    if key in CREDENTIAL_KEYS or _CREDENTIAL_NAME.search(key):
        return True
    return bool(get_close_matches(key, CREDENTIAL_KEYS, n=1, cutoff=0.85))


def is_credential(key: str, value: Any) -> bool:
    """Should this setting be a Pulumi secret? (By its name, or by the shape of its value.)"""
    if is_credential_key(key):
        return True
    return any(pattern.search(text) for text in _strings(value) for pattern in _CREDENTIAL_VALUES)


def hidden(key: str, value: Any) -> bool:
    """True when an error must not show this value."""
    if is_credential(key, value):
        return True
    return any(pattern.search(text) for text in _strings(value) for pattern in _MAYBE_CREDENTIAL_VALUES)


def has_userinfo(url: str) -> bool:
    """A URL that carries a user name or password (``https://root:pw@host``)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc and "@" in parts.netloc)


def without_userinfo(url: str) -> str:
    """The URL with its user name and password replaced by ``***``, safe to print."""
    parts = urlsplit(url.strip())
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item)]
    return []
