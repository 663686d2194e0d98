"""``python -m vzkeep``: the same command line as ``vzkeep``."""

from vzkeep.cli import main

main()
