"""vzkeep: backup strategy as code for Proxmox VE homelabs."""

__version__ = "0.1.0"
