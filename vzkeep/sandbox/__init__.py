"""The sandbox: an emulated Proxmox VE cluster on 127.0.0.1 (DESIGN.md "Three parts, one core")."""
