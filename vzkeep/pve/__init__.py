"""Proxmox VE semantics, matched to upstream behaviour (each module cites the PVE source it follows).

Modules: ``calendar`` (calendar events, next run), ``retention`` (prune-backups marking),
``archive`` (vzdump archive names), ``selection`` (which guests a job includes), ``upid`` (task ids),
``tasklog`` (what vzdump's task log says), ``values`` (PVE's booleans and time zones), ``client`` (the
typed seam through which the runtime talks to a PVE API).
"""
