"""vzkeep: backup strategy as code for Proxmox VE homelabs."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # The version is defined once, in pyproject.toml; the installed package's metadata carries it.
    # Looked up on first use only: importlib.metadata costs start-up time every command would pay.
    if name == "__version__":
        from importlib.metadata import version

        return version("vzkeep")
    raise AttributeError(f"module 'vzkeep' has no attribute {name!r}")
