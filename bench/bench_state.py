"""Benchmark: `vzkeep state versions` for a stack with 1,000 versions (target < 2 s).

Starts a real SeaweedFS on 127.0.0.1, writes 1,000 versions of a realistic checkpoint (stack, provider
and 40 backup-related resources, ~20 KB each), then times:
- `list_versions` in process (listing + reading and parsing every version), median of 5 runs;
- the installed `vzkeep state versions --json` command end to end (process start included), median of 3.

    .venv/bin/python bench/bench_state.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.s3server import running_s3_server  # noqa: E402
from tests.test_state import pulumi_checkpoint, stack_key  # noqa: E402
from vzkeep.state import list_versions, make_client, parse_backend_url, pulumi_target  # noqa: E402

VERSIONS = 1000
TARGET_SECONDS = 2.0


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir, running_s3_server(Path(workdir)) as s3:
        client = s3.client()
        client.create_bucket(Bucket="state")
        client.put_bucket_versioning(Bucket="state", VersioningConfiguration={"Status": "Enabled"})
        body = pulumi_checkpoint("prod", 40)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: client.put_object(Bucket="state", Key=stack_key("prod"), Body=body),
                          range(VERSIONS)))
        print(f"setup: wrote {VERSIONS} versions of {len(body)} bytes in {time.perf_counter() - started:.1f}s")

        os.environ.update(s3.env())
        backend = parse_backend_url(s3.backend_url("state"))
        state_client = make_client(backend)
        target = pulumi_target(state_client, backend, "prod")
        in_process = []
        for _ in range(5):
            started = time.perf_counter()
            found = list_versions(state_client, "state", target)
            in_process.append(time.perf_counter() - started)
        assert len(found) == VERSIONS and all(v.summary for v in found)

        command = [str(Path(sys.executable).with_name("vzkeep")), "state", "versions", "--stack", "prod", "--json"]
        env = {**os.environ, "PULUMI_BACKEND_URL": s3.backend_url("state")}
        end_to_end = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            end_to_end.append(time.perf_counter() - started)

    report("list_versions, 1000 versions (in process)", in_process)
    report("vzkeep state versions --json, 1000 versions (end to end)", end_to_end)


def report(name: str, samples: list[float]) -> None:
    median = statistics.median(samples)
    verdict = "ok" if median < TARGET_SECONDS else "OVER TARGET"
    print(f"{name}: median {median:.2f}s over {len(samples)} runs (target < {TARGET_SECONDS:.0f}s) {verdict}")


if __name__ == "__main__":
    main()
