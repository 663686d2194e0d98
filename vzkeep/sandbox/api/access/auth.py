"""Authentication like PVE: API tokens, ticket login, CSRF token (pve-manager ``PVE/HTTPServer.pm``
``auth_handler``, pve-access-control ``src/PVE/AccessControl.pm`` ``verify_token``/``verify_ticket``,
pve-http-server ``src/PVE/APIServer/Formatter.pm`` ``extract_auth_value``).

``Credentials`` holds what the sandbox must be able to hand out again at every start (the built-in
tokens' secrets for ``sandbox.json``, root's password, the ticket signing key); who exists and what
they may do is the access store's (``store``). Tickets are HMAC-signed here where PVE signs them with
RSA: clients treat them as opaque strings.
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
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from vzkeep.sandbox.api.access import usercfg

if TYPE_CHECKING:
    from vzkeep.sandbox.api.access.store import AccessStore

TICKET_LIFETIME = 2 * 3600  # PVE tickets are valid for two hours (AccessControl.pm $ticket_lifetime)
TOKEN_HEADER_RE = re.compile(r"(?:^|\s)PVEAPIToken(?:=|\s)([^;]*)")  # Formatter.pm extract_auth_value
COOKIE_NAME = "PVEAuthCookie"
ADMIN = "admin"
AUDITOR = "auditor"


class AuthFailed(Exception):
    """401 with an empty body; the reason phrase is ``No ticket`` or ``Authentication failed!``."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: an auth ID (``user@realm`` or ``user@realm!token``), and whether by API token."""

    authid: str
    token: bool = False

    @property
    def userid(self) -> str:
        # Tasks started with a token carry ``user@realm!tokenid`` as UPID user (pve-common RESTEnvironment.pm)
        return self.authid

    @property
    def user(self) -> str:
        parts = usercfg.split_tokenid(self.authid)
        return parts[0] if parts else self.authid


ROOT = Principal("root@pam")


@dataclass(frozen=True)
class BuiltinToken:
    """A token the sandbox creates for itself and lists in ``sandbox.json``."""

    user: str
    token_name: str
    token_value: str

    @property
    def full_id(self) -> str:
        return f"{self.user}!{self.token_name}"

    def to_json(self) -> dict[str, str]:
        return {"user": self.user, "token_name": self.token_name, "token_value": self.token_value}


@dataclass
class Credentials:
    tokens: dict[str, BuiltinToken]  # "admin" / "auditor" -> token
    root_password: str
    ticket_key: bytes

    @classmethod
    def generate(cls) -> Credentials:
        # Token secrets are UUIDs, as PVE generates them (TokenConfig.pm generate_token: UUID::uuid()).
        return cls(
            tokens={
                ADMIN: BuiltinToken("root@pam", "vzkeep", str(uuid.uuid4())),
                AUDITOR: BuiltinToken("prometheus@pve", "monitoring", str(uuid.uuid4())),
            },
            root_password=secrets.token_urlsafe(18),
            ticket_key=secrets.token_bytes(32),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Credentials:
        tokens = {role: BuiltinToken(t["user"], t["token_name"], t["token_value"])
                  for role, t in data["tokens"].items()}
        return cls(tokens, data["root_password"], bytes.fromhex(data["ticket_key"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": {role: t.to_json() for role, t in self.tokens.items()},
            "root_password": self.root_password,
            "ticket_key": self.ticket_key.hex(),
        }

    # -- tickets (AccessControl.pm assemble_ticket / verify_ticket) ----------------------------------------

    def _sign(self, text: str) -> str:
        digest = hmac.new(self.ticket_key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
        return base64.b64encode(digest).decode().rstrip("=")

    def create_ticket(self, user: str, now: float | None = None) -> str:
        plain = f"PVE:{user}:{int(now or time.time()):08X}"
        return f"{plain}::{self._sign(plain)}"

    def verify_ticket(self, ticket: str) -> str:
        """The user of a valid, unexpired ticket, else AuthFailed. Tickets use wall time, not the sandbox clock."""
        plain, sep, signature = ticket.partition("::")
        parts = plain.split(":")
        if not sep or len(parts) != 3 or parts[0] != "PVE" or not re.fullmatch(r"[0-9A-F]{8,}", parts[2]):
            raise AuthFailed("Authentication failed!")
        if not hmac.compare_digest(self._sign(plain).encode(), signature.encode("utf-8", "surrogateescape")):
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
        return bool(stamp) and hmac.compare_digest(self._sign(stamp + user).encode(),
                                                   signature.encode("utf-8", "surrogateescape"))


def token_from_header(header: str) -> str | None:
    match = TOKEN_HEADER_RE.search(header)
    return unquote(match.group(1), errors="surrogateescape") if match else None


def authenticate(creds: Credentials, store: AccessStore, method: str, headers: Any,
                 cookies: dict[str, str]) -> Principal:
    """``auth_handler``: the cookie ticket first, then the API token; tokens skip the CSRF check."""
    auth = headers.get("Authorization") or ""
    ticket = cookies.get(COOKIE_NAME)
    if not ticket and auth:
        cookie_in_header = re.search(rf"(?:^|\s){COOKIE_NAME}(?:=|\s)([^;]*)", auth)
        ticket = cookie_in_header.group(1) if cookie_in_header else None
    if not ticket and auth:
        api_token = token_from_header(auth)
        if api_token is not None:
            return Principal(verify_token(store, api_token), token=True)
    if not ticket:
        raise AuthFailed("No ticket")
    user = creds.verify_ticket(unquote(ticket, errors="surrogateescape"))
    if not store.user_enabled(user):
        raise AuthFailed("Authentication failed!")
    if method != "GET" and not creds.verify_csrf(user, headers.get("CSRFPreventionToken") or ""):
        # verify_csrf_prevention_token dies with a 401 (HTTPServer.pm runs it inside auth_handler)
        raise AuthFailed("Permission denied - invalid csrf token")
    return Principal(user)


def verify_token(store: AccessStore, api_token: str) -> str:
    """``verify_token``: ``<tokenid>=<secret>`` split at the last ``=``; the user must be enabled and
    the token exist, be unexpired and match."""
    tokenid, sep, secret = api_token.rpartition("=")
    parts = usercfg.split_tokenid(tokenid) if sep else None
    if not parts or not store.token_valid(tokenid, secret):
        raise AuthFailed("Authentication failed!")
    return tokenid
