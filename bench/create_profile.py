"""Where a create with wait=true spends its time inside the API process.

    .venv/bin/python bench/create_profile.py [--creates 40]

Starts a whole platform (bench/harness.py) whose `forkyard serve` loads
bench/create_profile/sitecustomize.py, makes `--creates` instances with
`POST /v1/instances?wait=true` (one at a time, after a warm-up one), and prints p50 per create of
each step of create_and_boot and of each SQL statement (by step, kind and table; count per
create beside it). Steps nest, so their times overlap: `service.provision` includes its emit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from harness import delete_all, first_instance, load, platform


async def run(creates: int) -> None:
    out = Path(tempfile.mkdtemp(prefix="fy-create-profile-")) / "creates.json"
    here = str(Path(__file__).parent / "create_profile")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [here, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    os.environ["FY_CREATE_PROFILE"] = str(out)
    print(load())
    ids: list[str] = []
    async with platform() as p:
        ids.append(await first_instance(p.api))
        client: list[float] = []
        for _ in range(creates + 1):
            t = time.perf_counter()
            r = await p.api.post(
                "/v1/instances", params={"wait": "true"}, json={"memory_mb": 128, "disk_mb": 256}
            )
            client.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        await delete_all(p.api, ids)
    print(load())
    rows = json.loads(out.read_text())[1:]  # the first create with wait=true warms caches
    keys = sorted({k for r in rows for k in r if not k.startswith("#")})
    print(f"{len(rows)} creates; client-side p50 {statistics.median(client[1:]):.1f} ms")
    print(f"{'p50 ms':>8s} {'n/create':>8s}  step or statement")
    for k in sorted(keys, key=lambda k: (not k.startswith("whole"), not k.startswith("step"), k)):
        vals = [r.get(k, 0.0) for r in rows]
        n = statistics.median([r.get("#" + k, 0.0) for r in rows])
        print(f"{statistics.median(vals):8.2f} {n:8.0f}  {k}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=40)
    asyncio.run(run(ap.parse_args().creates))


if __name__ == "__main__":
    main()
