"""Authentication like PVE: API tokens, ticket login, CSRF token (reference §4.1 "API token").

Two tokens exist: ``root@pam!vzkeep`` (every privilege) and ``prometheus@pve!monitoring`` with the
PVEAuditor role on ``/`` (what the exporter README asks for). ``root@pam`` can also log in with a
password (``POST /access/ticket``) and then uses the ``PVEAuthCookie`` cookie plus the
``CSRFPreventionToken`` header on writes, as proxmoxer does with ``user``/``password``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from vzkeep.sandbox.api.errors import ApiError
from vzkeep.sandbox.api.router import AUDITOR_PRIVILEGES, ROOT, Principal, Request, Router
from vzkeep.sandbox.api.schema import Param

TICKET_LIFETIME = 2 * 3600  # PVE tickets are valid for two hours (pve-access-control AccessControl.pm)
TOKEN_HEADER_RE = re.compile(r"(?:^|\s)PVEAPIToken(?:=| )([^;]*)")  # Formatter.pm extract_auth_value
TOKEN_ID_RE = re.compile(r"^(\S+@\S+)!([A-Za-z][A-Za-z0-9.\-_]+)$")  # AccessControl.pm pve_verify_tokenid


class AuthFailed(Exception):
    """401 with an empty body; the reason phrase is ``No ticket`` or ``Authentication failed!``."""


@dataclass(frozen=True)
class Token:
    user: str
    token_name: str
    token_value: str
    privileges: frozenset[str] | None

    @property
    def full_id(self) -> str:
        return f"{self.user}!{self.token_name}"

    def to_json(self) -> dict[str, str]:
        return {"user": self.user, "token_name": self.token_name, "token_value": self.token_value}


ROLE_PRIVILEGES: dict[str, frozenset[str] | None] = {"admin": None, "auditor": AUDITOR_PRIVILEGES}


@dataclass
class Credentials:
    tokens: dict[str, Token]  # role -> token
    root_password: str
    ticket_key: bytes

    @classmethod
    def generate(cls) -> Credentials:
        # Token secrets are UUIDs, as PVE generates them.
        return cls(
            tokens={
                "admin": Token("root@pam", "vzkeep", str(uuid.uuid4()), None),
                "auditor": Token("prometheus@pve", "monitoring", str(uuid.uuid4()), AUDITOR_PRIVILEGES),
            },
            root_password=secrets.token_urlsafe(18),
            ticket_key=secrets.token_bytes(32),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Credentials:
        tokens = {
            role: Token(t["user"], t["token_name"], t["token_value"], ROLE_PRIVILEGES.get(role))
            for role, t in data["tokens"].items()
        }
        return cls(tokens, data["root_password"], bytes.fromhex(data["ticket_key"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": {role: t.to_json() for role, t in self.tokens.items()},
            "root_password": self.root_password,
            "ticket_key": self.ticket_key.hex(),
        }

    # -- tokens ------------------------------------------------------------------------------

    def principal_for_token(self, header: str) -> Principal:
        match = TOKEN_HEADER_RE.search(header)
        if not match:
            raise AuthFailed("Authentication failed!")
        value = unquote(match.group(1))
        # verify_token splits at the LAST '=' (reference §4.1).
        token_id, sep, secret = value.rpartition("=")
        parsed = TOKEN_ID_RE.match(token_id) if sep else None
        if not parsed:
            raise AuthFailed("Authentication failed!")
        for token in self.tokens.values():
            if token.full_id == token_id and hmac.compare_digest(token.token_value, secret):
                return Principal(token.user, token.token_name, token.privileges)
        raise AuthFailed("Authentication failed!")

    # -- tickets -----------------------------------------------------------------------------

    def _sign(self, text: str) -> str:
        digest = hmac.new(self.ticket_key, text.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode().rstrip("=")

    def create_ticket(self, user: str, now: float | None = None) -> str:
        plain = f"PVE:{user}:{int(now or time.time()):08X}"
        return f"{plain}::{self._sign(plain)}"

    def verify_ticket(self, ticket: str) -> str:
        """The user of a valid, unexpired ticket, else AuthFailed. Tickets use wall time, not the sandbox clock."""
        plain, sep, signature = ticket.partition("::")
        parts = plain.split(":")
        if not sep or len(parts) != 3 or parts[0] != "PVE":
            raise AuthFailed("Authentication failed!")
        if not hmac.compare_digest(self._sign(plain), signature):
            raise AuthFailed("Authentication failed!")
        age = time.time() - int(parts[2], 16)
        if age < -300 or age > TICKET_LIFETIME:
            raise AuthFailed("Authentication failed!")
        return parts[1]

    def csrf_token(self, user: str, now: float | None = None) -> str:
        stamp = f"{int(now or time.time()):08X}"
        return f"{stamp}:{self._sign(stamp + user)}"

    def verify_csrf(self, user: str, token: str) -> bool:
        stamp, _, signature = token.partition(":")
        return bool(stamp) and hmac.compare_digest(self._sign(stamp + user), signature)

    def principal_for_ticket(self, ticket: str, method: str, csrf: str | None) -> Principal:
        user = self.verify_ticket(unquote(ticket))
        if method != "GET" and not (csrf and self.verify_csrf(user, csrf)):
            # PVE's HTTPServer answers a missing/bad CSRF token with 401 (not 403).
            raise AuthFailed("Permission denied - invalid csrf token")
        return ROOT if user == "root@pam" else Principal(user, None, frozenset())


def authenticate(creds: Credentials, method: str, headers: Any, cookies: dict[str, str]) -> Principal:
    """The caller's identity from the token header or the ticket cookie (tokens skip CSRF)."""
    auth = headers.get("Authorization")
    if auth:
        return creds.principal_for_token(auth)
    ticket = cookies.get("PVEAuthCookie")
    if ticket:
        return creds.principal_for_ticket(ticket, method, headers.get("CSRFPreventionToken"))
    raise AuthFailed("No ticket")


def _login(req: Request) -> dict[str, Any]:
    creds: Credentials = req.app.credentials
    username = req.params["username"]
    if "@" not in username and req.params.get("realm"):
        username = f"{username}@{req.params['realm']}"
    password = req.params["password"]
    ok = username == "root@pam" and hmac.compare_digest(password, creds.root_password)
    if not ok:
        try:  # proxmoxer renews a ticket by sending the old ticket as password
            ok = username == "root@pam" and creds.verify_ticket(password) == "root@pam"
        except AuthFailed:
            ok = False
    if not ok:
        raise ApiError(401, "authentication failure")
    return {
        "username": username,
        "ticket": creds.create_ticket(username),
        "CSRFPreventionToken": creds.csrf_token(username),
        "cap": {"access": {}, "dc": {}, "nodes": {}, "sdn": {}, "storage": {}, "vms": {}},
    }


LOGIN_SCHEMA = {
    "username": Param(optional=False, max_length=64),
    "password": Param(optional=False),
    "realm": Param(),
    "otp": Param(),
    "path": Param(),
    "privs": Param(),
    "new-format": Param(type="boolean"),
    "tfa-challenge": Param(),
}


def register(router: Router) -> None:
    router.add("POST", "/access/ticket", LOGIN_SCHEMA)(_login)
