"""``vzkeep sandbox apply``: a stack's ``pulumi up``, carried out on the sandbox the way the providers would.

``engine`` runs it; ``resources`` holds one module per resource kind (the provider's requests, with
the source files they follow); ``registry`` maps SDK type tokens to them; ``plan`` is Pulumi's diff;
``preflight`` checks the cluster before anything changes; ``state`` keeps what was applied.
"""
