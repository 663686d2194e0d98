"""Shared test support: cluster builders, running servers and tools, waits, metrics parsing."""
