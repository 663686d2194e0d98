"""vzkeep: one environment's backups as code. Everything happens in components.stack."""

from components.stack import build_stack

build_stack()
