"""Benchmark: `vzkeep state versions` for a stack with 1,000 versions (target < 2 s).

Starts a real SeaweedFS on 127.0.0.1, writes 1,000 versions of a realistic checkpoint (stack, provider
and 40 backup-related resources, ~20 KB each), then times:
- `list_versions` in process, cold (listing + downloading and parsing every version) and warm (summary
  cache: versions are immutable, so only the listing is needed), median of 5 runs each;
- the installed `vzkeep state versions --json` command end to end (process start included), with
  `--no-cache` and with a warm cache, median of 3 runs each.

    .venv/bin/python bench/bench_state.py
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.s3server import running_s3_server
from tests.helpers.state_files import pulumi_checkpoint, stack_key
from vzkeep.state import list_versions, make_client, parse_backend_url, pulumi_target
from vzkeep.state.versions import SummaryCache

VERSIONS = 1000
TARGET_SECONDS = 2.0


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir, running_s3_server(Path(workdir)) as s3:
        client = s3.client()
        client.create_bucket(Bucket="state")
        client.put_bucket_versioning(Bucket="state", VersioningConfiguration={"Status": "Enabled"})
        # Every version differs (as real checkpoints do: the manifest time changes), so nothing is deduplicated.
        bodies = [
            pulumi_checkpoint("prod", 40, updated=f"2026-11-20T02:{i // 60 % 60:02d}:{i % 60:02d}Z")
            for i in range(VERSIONS)
        ]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda body: client.put_object(Bucket="state", Key=stack_key("prod"), Body=body), bodies))
        print(f"setup: wrote {VERSIONS} versions of ~{len(bodies[0])} bytes in {time.perf_counter() - started:.1f}s")

        os.environ.update(s3.env())
        backend = parse_backend_url(s3.backend_url("state"))
        state_client = make_client(backend)
        target = pulumi_target(state_client, backend, "prod")
        cold = timed(5, lambda: list_versions(state_client, "state", target))
        cache = SummaryCache(Path(workdir) / "cache.json")
        list_versions(state_client, "state", target, cache=cache)
        warm = timed(5, lambda: list_versions(state_client, "state", target, cache=cache))

        command = [str(Path(sys.executable).with_name("vzkeep")), "state", "versions", "--stack", "prod", "--json"]
        env = {**os.environ, "PULUMI_BACKEND_URL": s3.backend_url("state"), "XDG_CACHE_HOME": workdir}
        run = functools.partial(subprocess.run, env=env, check=True, stdout=subprocess.DEVNULL)
        cli_cold = timed(3, lambda: run([*command, "--no-cache"]))
        run(command)
        cli_warm = timed(3, lambda: run(command))

    report("list_versions, cold (every version downloaded and parsed)", cold)
    report("list_versions, warm (summary cache, new versions only)", warm)
    report("`vzkeep state versions --json --no-cache` end to end", cli_cold)
    report("`vzkeep state versions --json` end to end, cache warm", cli_warm)


def timed(runs: int, action: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        samples.append(time.perf_counter() - started)
        if isinstance(result, list):
            assert len(result) == VERSIONS and all(v.summary for v in result)
    return samples


def report(name: str, samples: list[float]) -> None:
    median = statistics.median(samples)
    verdict = "ok" if median < TARGET_SECONDS else "OVER TARGET"
    print(f"{name}: median {median:.2f}s over {len(samples)} runs (target < {TARGET_SECONDS:.0f}s) {verdict}")


if __name__ == "__main__":
    main()
