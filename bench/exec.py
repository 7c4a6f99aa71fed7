"""The exec round trip alone (ADR 0008), and what exec.finished costs it: `true` through the API
with nobody listening, then with a webhook endpoint subscribed to exec.finished (deliveries go to
a receiver on loopback, sent by the API's own worker), in alternating blocks so that load from
elsewhere falls on both alike. Prints; asserts nothing. One JSON line at the end for scripts.

Run as root: /work/main/.venv/bin/python bench/exec.py [--blocks 4] [--per-block 100]
Against another tree in the same run: PYTHONPATH=<tree>/src, from <tree>/bench (its harness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from harness import PASSWORD, Platform, _env_of, first_instance, load, platform


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class _Receiver(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def end_costs(p: Platform, browser: httpx.AsyncClient, warm: str, hook: str) -> None:
    """The end of an exec alone, where exec.finished is written (this tree's `Target.finish`:
    the listener question, then one statement), against the statement it replaced (the record's
    end and the activity stamp, rebuilt here), alternating, with the endpoint off then on."""
    try:
        from forkyard.compute.exec.claim import EXEC_ENDED_HEARD, Target  # noqa: F401
    except ImportError:
        return  # a tree from before exec.finished
    from sqlalchemy import Table, bindparam, select, update

    from forkyard.compute.models import ExecRecord, Instance
    from forkyard.db.changes import changes
    from forkyard.db.engine import plain_sql
    from forkyard.events import Actor
    from forkyard.kit.clock import utcnow
    from forkyard.kit.ids import new_id
    from forkyard.tasks import load_all_tasks

    load_all_tasks()
    feed = asyncio.create_task(changes.run(p.settings.database_url))
    records: Table = ExecRecord.__table__  # type: ignore[assignment]
    instances: Table = Instance.__table__  # type: ignore[assignment]
    touched = (
        update(instances)
        .where(instances.c.id == bindparam("p_instance_id"))
        .values(last_activity_at=bindparam("p_now"))
        .returning(instances.c.id)
        .cte("touched")
    )
    before = plain_sql(
        update(records)
        .where(records.c.id == bindparam("p_id"))
        .values(
            status=bindparam("p_status"),
            exit_code=bindparam("p_exit_code"),
            duration_ms=bindparam("p_duration_ms"),
            finished_at=bindparam("p_now"),
        )
        .add_cte(touched)
    )
    async with p.db.transaction() as s:
        org_id = await s.scalar(select(Instance.org_id).where(Instance.id == warm))
    assert org_id is not None
    costs: dict[str, list[float]] = {"before": [], "nobody": [], "webhook": []}
    for block in range(6):
        condition = "webhook" if block % 2 else "nobody"
        r = await browser.patch(f"/v1/webhooks/{hook}", json={"enabled": block % 2 == 1})
        r.raise_for_status()
        await asyncio.sleep(0.5)
        ids = [new_id("exec") for _ in range(2 * 60)]
        async with p.db.transaction() as s:
            s.add_all(
                ExecRecord(id=i, instance_id=warm, org_id=org_id, command="true", status="running")
                for i in ids
            )
        for i in range(60):
            t = time.perf_counter()
            await p.db.plain(
                before,
                {"p_id": ids[2 * i], "p_instance_id": warm, "p_status": "exited",
                 "p_exit_code": 0, "p_duration_ms": 1.0, "p_now": utcnow()},
            )  # fmt: skip
            costs["before"].append((time.perf_counter() - t) * 1000)
            target = Target(
                warm,
                None,
                p.db,
                org_id,
                Actor(type="api_key"),
                ids[2 * i + 1],  # type: ignore[arg-type]
            )
            t = time.perf_counter()
            await target.finish("exited", exit_code=0, duration_ms=1.0, stdout_bytes=0)
            if i >= 2:  # the first ones after a change ask the database who listens
                costs[condition].append((time.perf_counter() - t) * 1000)
    feed.cancel()
    for name, xs in costs.items():
        print(
            f"end of exec, {name:8}: p50 {statistics.median(xs) * 1000:6.0f} us"
            f"   p95 {pct(xs, 0.95) * 1000:6.0f} us   (n={len(xs)})"
        )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=4, help="blocks per condition")
    ap.add_argument("--per-block", type=int, default=100)
    ap.add_argument(
        "--worker-apart",
        action="store_true",
        help="jobs (deliveries) in a `forkyard worker` process, not in the API's",
    )
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    # No SSH gateway: it is not on the exec path, and its port may be taken by another run.
    async with platform(
        webhooks_allow_private=True, ssh_enabled=False, run_worker_in_api=not args.worker_apart
    ) as p:
        print(load())
        worker = None
        if args.worker_apart:
            worker = subprocess.Popen(
                [sys.executable, "-m", "forkyard.cli", "worker", "--data-dir", str(p.work / "w")],
                env={**os.environ, **_env_of(p.settings)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        api = p.api
        async with httpx.AsyncClient(base_url=p.url, headers={"Origin": p.url}) as browser:
            r = await browser.post(
                "/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD}
            )
            r.raise_for_status()
            r = await browser.post(
                "/v1/webhooks",
                json={"url": receiver, "event_types": ["exec.finished"], "enabled": False},
            )
            r.raise_for_status()
            hook = r.json()["id"]
            warm = await first_instance(api)
            for _ in range(50):
                await api.post(f"/v1/instances/{warm}/exec", json={"command": ["true"]})
            samples: dict[str, list[float]] = {"nobody": [], "webhook": []}
            for _ in range(args.blocks):
                for condition, enabled in (("nobody", False), ("webhook", True)):
                    r = await browser.patch(f"/v1/webhooks/{hook}", json={"enabled": enabled})
                    r.raise_for_status()
                    await asyncio.sleep(0.3)  # the announcement, and the last block's deliveries
                    for _ in range(args.per_block):
                        t = time.perf_counter()
                        r = await api.post(f"/v1/instances/{warm}/exec", json={"command": ["true"]})
                        samples[condition].append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200, r.text
            await asyncio.sleep(2)
            await end_costs(p, browser, warm, hook)
        out: dict[str, Any] = {"received": _Receiver.received}
        for condition, xs in samples.items():
            out[condition] = {"p50": statistics.median(xs), "p95": pct(xs, 0.95), "n": len(xs)}
            print(
                f"exec `true` round trip, {condition:8}: p50 {statistics.median(xs):6.2f} ms"
                f"   p95 {pct(xs, 0.95):6.2f} ms   (n={len(xs)})"
            )
        print(f"webhook deliveries received: {_Receiver.received}")
        print(load())
        print(json.dumps(out))
        if worker is not None:
            worker.terminate()
            worker.wait(30)
    server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
