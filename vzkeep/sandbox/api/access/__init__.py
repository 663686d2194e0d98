"""PVE's access control: users, groups, roles, ACLs and API tokens (``usercfg``), the built-in roles
per version (``privileges``), the permission checks (``rpcenv``) and authentication (``auth``)."""
