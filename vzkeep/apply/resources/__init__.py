"""One module per resource kind: the calls its provider makes for create, read, update and delete."""
