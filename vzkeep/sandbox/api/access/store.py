"""The access state of one sandbox, persisted in ``STATE/access/``:

    user.cfg     users, tokens, groups, custom roles, ACLs in PVE's own line format (AccessControl.pm)
    token.cfg    API token secrets, one ``<tokenid> <hash>`` per line (PVE: /etc/pve/priv/token.cfg)
    shadow.cfg   passwords of ``@pve`` users, ``<userid> <hash>`` (PVE: /etc/pve/priv/shadow.cfg)

Every file is replaced atomically (``vzkeep.atomic``: a 0600 temporary file under a unique name,
fsync, rename, fsync of the directory). PVE keeps token secrets in clear in its root-only
``priv/token.cfg``; a sandbox's directory is easier to copy around, so the sandbox keeps only hashes.
Changes go through ``vzkeep.sandbox.configuration`` (under the cluster lock); readers take ``cfg``
once per request, a dict that a commit replaces and never mutates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vzkeep.atomic import write_private
from vzkeep.sandbox.api.access import usercfg
from vzkeep.sandbox.api.access.rpcenv import PoolMembers, RpcEnv
from vzkeep.sandbox.api.access.usercfg import Cfg

if TYPE_CHECKING:
    from vzkeep.sandbox.api.access.auth import Credentials
    from vzkeep.sandbox.api.versions import PveVersion

DIRECTORY = "access"
USER_CFG = "user.cfg"
TOKEN_CFG = "token.cfg"
SHADOW_CFG = "shadow.cfg"
AUDITOR_ROLE = "PVEAuditor"


class AccessStore:
    def __init__(self, directory: Path, version: PveVersion, now: Callable[[], float]) -> None:
        self.directory = directory
        self.version = version
        self.now = now
        self.cfg: Cfg = {}
        self.token_hashes: dict[str, str] = {}
        self.password_hashes: dict[str, str] = {}

    # -- opening -------------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, version: PveVersion, creds: Credentials, now: Callable[[], float]) -> AccessStore:
        """The access state of ``directory``; a new one holds root@pam, the admin token (root, no
        privilege separation) and the auditor: ``prometheus@pve`` and its privilege-separated token,
        each with exactly the built-in PVEAuditor role on ``/``."""
        store = cls(directory / DIRECTORY, version, now)
        if (store.directory / USER_CFG).exists():
            store._load()
        else:
            store._bootstrap(creds)
        return store

    def _load(self) -> None:
        self.cfg = self.parse((self.directory / USER_CFG).read_text(encoding="utf-8"))
        for name, target in ((TOKEN_CFG, self.token_hashes), (SHADOW_CFG, self.password_hashes)):
            path = self.directory / name
            target.update(usercfg.parse_secrets(path.read_text(encoding="utf-8")) if path.exists() else {})

    def _bootstrap(self, creds: Credentials) -> None:
        from vzkeep.sandbox.api.access.auth import ADMIN, AUDITOR

        cfg = self.parse("")
        admin, auditor = creds.tokens[ADMIN], creds.tokens[AUDITOR]
        cfg["users"][auditor.user] = {"enable": 1, "expire": 0,
                                      "comment": "vzkeep sandbox: read-only (PVEAuditor on /)"}
        cfg["users"][admin.user].setdefault("tokens", {})[admin.token_name] = {
            "privsep": 0, "expire": 0, "comment": "vzkeep sandbox: full access"}
        cfg["users"][auditor.user]["tokens"] = {auditor.token_name: {
            "privsep": 1, "expire": 0, "comment": "vzkeep sandbox: PVEAuditor on /"}}
        root = cfg["acl_root"]
        root.setdefault("users", {})[auditor.user] = {AUDITOR_ROLE: 1}
        root.setdefault("tokens", {})[auditor.full_id] = {AUDITOR_ROLE: 1}
        self.token_hashes = {t.full_id: usercfg.hash_token(t.token_value) for t in (admin, auditor)}
        self.commit(cfg, secrets=True)

    # -- reading ----------------------------------------------------------------------------------------

    def parse(self, text: str) -> Cfg:
        return usercfg.parse_user_config(text, self.version.roles, self.version.privileges)

    def snapshot(self) -> Cfg:
        """A private copy of the configuration to change and ``commit``."""
        return copy.deepcopy(self.cfg)

    def rpcenv(self, pool_source: Callable[[], Mapping[str, PoolMembers]]) -> RpcEnv:
        return RpcEnv(self.cfg, pool_source)

    def user_enabled(self, userid: str) -> bool:
        """``check_user_enabled``: the user exists, is enabled and not expired."""
        user = usercfg.user_of(self.cfg, userid)
        if user is None or not user.get("enable"):
            return False
        expire = user.get("expire") or 0
        return not (expire and expire < self.now())

    def token_valid(self, tokenid: str, secret: str) -> bool:
        parts = usercfg.split_tokenid(tokenid)
        if parts is None or not self.user_enabled(parts[0]):
            return False
        token = usercfg.token_of(self.cfg, *parts)
        if token is None or (token.get("expire") and token["expire"] < self.now()):
            return False
        stored = self.token_hashes.get(tokenid)
        return stored is not None and usercfg.secret_matches(stored, secret)

    def password_valid(self, userid: str, password: str) -> bool:
        stored = self.password_hashes.get(userid)
        return stored is not None and self.user_enabled(userid) and usercfg.secret_matches(stored, password)

    # -- writing (callers hold the cluster lock: vzkeep.sandbox.configuration) --------------------------

    def commit(self, cfg: Cfg, secrets: bool = False) -> None:
        """Write ``cfg`` as user.cfg and read it back (PVE's own round trip); secrets too if asked."""
        text = usercfg.write_user_config(cfg, self.version.roles)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if secrets:
            write_private(self.directory / TOKEN_CFG, usercfg.write_secrets(self.token_hashes))
            write_private(self.directory / SHADOW_CFG, usercfg.write_secrets(self.password_hashes))
        write_private(self.directory / USER_CFG, text)
        self.cfg = self.parse(text)

    def set_token_secret(self, tokenid: str, secret: str | None) -> None:
        if secret is None:
            self.token_hashes.pop(tokenid, None)
        else:
            self.token_hashes[tokenid] = usercfg.hash_token(secret)

    def set_password(self, userid: str, password: str | None) -> None:
        if password is None:
            self.password_hashes.pop(userid, None)
        else:
            self.password_hashes[userid] = usercfg.hash_secret(password)

    def describe(self) -> dict[str, Any]:
        return {"users": sorted(self.cfg["users"]), "roles": sorted(self.cfg["roles"])}
