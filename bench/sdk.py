"""The Python SDK's exec round trip against raw httpx, in the same run (prints; asserts nothing).

Both are synchronous, keep one connection, run `true` in the same instance, interleaved. The raw
client sends what the SDK sends (the API key, an Idempotency-Key on the POST), so the difference
is the SDK's own cost: building the request, the retry loop, parsing into ExecResult. Raw httpx
without the Idempotency-Key (on a connection of its own, so that one request's bookkeeping after
its answer does not delay the other's) is printed too: the difference is the server's cost of
the key (identity/idempotency.py).

Run as root: /work/main/.venv/bin/python bench/sdk.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
from forkyard_sdk import Forkyard
from harness import delete_all, first_instance, platform


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


async def main(rounds: int) -> None:
    async with platform() as p:
        iid = await first_instance(p.api)
        key = str(p.api.headers["Authorization"]).split()[1]
        body = {"command": "true"}
        path = f"/v1/instances/{iid}/exec"
        fy = Forkyard(api_key=key, base_url=p.url)
        inst = fy.instances.get(iid)
        raw = httpx.Client(base_url=p.url, headers={"Authorization": f"Bearer {key}"})
        raw_nokey = httpx.Client(base_url=p.url, headers={"Authorization": f"Bearer {key}"})
        sdk_t: list[float] = []
        raw_t: list[float] = []
        raw_nokey_t: list[float] = []
        for i in range(rounds + 20):
            t0 = time.perf_counter()
            assert inst.exec("true").exit_code == 0
            t1 = time.perf_counter()
            r = raw.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
            assert r.json()["exit_code"] == 0
            t2 = time.perf_counter()
            assert raw_nokey.post(path, json=body).json()["exit_code"] == 0
            t3 = time.perf_counter()
            if i >= 20:  # warm-up
                sdk_t.append(t1 - t0)
                raw_t.append(t2 - t1)
                raw_nokey_t.append(t3 - t2)
        # The SDK's own work without the network: the same call against a canned answer.
        answer = raw.post(path, json=body).content
        local = Forkyard(
            api_key=key,
            base_url="http://sdk.local",
            http_client=httpx.Client(
                base_url="http://sdk.local",
                transport=httpx.MockTransport(lambda req: httpx.Response(200, content=answer)),
            ),
        )
        from forkyard_sdk.client import Instance

        offline = Instance(local, inst.data)
        raw_local = httpx.Client(
            base_url="http://sdk.local",
            transport=httpx.MockTransport(lambda req: httpx.Response(200, content=answer)),
        )
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            offline.exec("true")
        t1 = time.perf_counter()
        for _ in range(n):
            raw_local.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}).json()
        t2 = time.perf_counter()
        fy.close()
        raw.close()
        raw_nokey.close()
        await delete_all(p.api, [iid])
    print(f"exec `true`, {rounds} rounds each, interleaved (median ms):")
    print(f"  SDK inst.exec()                      {median_ms(sdk_t):7.3f}")
    print(f"  raw httpx, same headers              {median_ms(raw_t):7.3f}")
    print(f"  raw httpx, no Idempotency-Key        {median_ms(raw_nokey_t):7.3f}")
    print(f"  SDK added (median difference)        {median_ms(sdk_t) - median_ms(raw_t):7.3f}")
    key_cost = median_ms(raw_t) - median_ms(raw_nokey_t)
    print(
        f"  Idempotency-Key (median difference)  {key_cost:7.3f}  "
        f"(x{median_ms(raw_t) / median_ms(raw_nokey_t):.2f} the exec without it)"
    )
    print(
        f"  SDK added, no network ({n} calls)   "
        f"{((t1 - t0) - (t2 - t1)) / n * 1000:7.3f}  "
        f"(SDK {(t1 - t0) / n * 1000:.3f}, raw {(t2 - t1) / n * 1000:.3f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    asyncio.run(main(parser.parse_args().rounds))
