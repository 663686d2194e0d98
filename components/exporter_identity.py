"""ExporterIdentity: the exporter's PVE user, its role, the ACL that grants it, and its API token.

The role holds exactly `vzkeep.pve.privileges.EXPORTER_ROLE_PRIVILEGES` (why each one: that module).
Pulumi's own token needs, to declare these (pve-access-control `src/PVE/API2/`): `Realm.AllocateUser`
on `/access/realm/pve` and `User.Modify` on `/access/groups` (User.pm create_user, generate_token),
`Sys.Modify` on `/access` (Role.pm create_role), `Permissions.Modify` on the ACL's path (ACL.pm update_acl).
The token's value is a secret output (`USER@REALM!TOKENID=SECRET`, bpg/terraform-provider-proxmox
`proxmox/access/user_token.go` CreateUserToken), handed to the exporter's deployment as a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from vzkeep.plan import ExporterIdentitySpec


@dataclass
class ExporterIdentityArgs:
    spec: ExporterIdentitySpec


class ExporterIdentity(pulumi.ComponentResource):
    token: pulumi.Output[str]

    def __init__(self, name: str, args: ExporterIdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vzkeep:backup:ExporterIdentity", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)
        self.role = proxmoxve.RoleLegacy(f"{name}-role", role_id=spec.role_id, privileges=list(spec.privileges),
                                         opts=child)
        # No password: the user only authenticates with its token.
        self.user = proxmoxve.UserLegacy(f"{name}-user", user_id=spec.user_id, enabled=True,
                                         comment="vzkeep exporter: reads backups, jobs and storages", opts=child)
        self.acl = proxmoxve.Acl(f"{name}-acl", path=spec.acl_path, role_id=self.role.role_id,
                                 user_id=self.user.user_id, propagate=True, opts=child)
        # Not privilege-separated: the token has the user's ACL (and nothing else, the user has no other).
        self.api_token = proxmoxve.user.Token(
            f"{name}-token", user_id=self.user.user_id, token_name=spec.token_name, privileges_separation=False,
            comment="vzkeep exporter", opts=pulumi.ResourceOptions(parent=self, depends_on=[self.acl]))
        self.token = pulumi.Output.secret(self.api_token.value)
        self.register_outputs({"userId": spec.user_id, "roleId": spec.role_id, "tokenId": spec.token_id,
                               "privileges": list(spec.privileges)})
