"""Entry point the Pulumi CLI runs: `pulumi preview --policy-pack policies`.

Only this file builds the PolicyPack: its constructor starts a gRPC server and blocks forever.
"""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# The pack runs from its own directory; the project root holds `policies` and `vzkeep`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies.backup_policies import PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
