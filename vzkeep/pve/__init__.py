"""Proxmox VE semantics, matched to upstream behaviour (see ../shared/reference/pve.md).

Modules: ``calendar`` (calendar events, next run), ``retention`` (prune-backups marking),
``archive`` (vzdump archive names), ``selection`` (which guests a job includes).
"""
