"""API throughput: `GET /v1/auth/me` with an API key and `GET /health/live` on the real app
(uvicorn, a worker, a migrated embedded PostgreSQL in a temp dir) against a bare FastAPI
hello-world served the same way (one uvicorn process each), driven by a bounded async httpx load
from a separate process. Prints requests/s, p50/p99 and the ratios to bare.

    .venv/bin/python bench/api.py [--duration 5] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
UVICORN = {"host": "127.0.0.1", "log_level": "warning", "access_log": False, "workers": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_forkyard(port: int, database_url: str, data_dir: str) -> None:
    import uvicorn

    from forkyard.app import create_app
    from forkyard.config import Settings
    from forkyard.kit.logging import configure_logging

    settings = Settings(
        database_url=database_url,
        data_dir=Path(data_dir),
        # The load comes from one key: lift its per-principal limit out of the way.
        rate_limit_principal_per_min=10**9,
        log_level="INFO",
        log_json=True,
    )
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings), port=port, log_config=None, **UVICORN)  # type: ignore[arg-type]


def serve_bare(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    uvicorn.run(app, port=port, log_config=None, **UVICORN)  # type: ignore[arg-type]


async def _load(
    url: str, headers: dict[str, str], duration: float, concurrency: int
) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=10) as client:
        for _ in range(50):  # warm up: connections, caches, JIT-free but pool-full
            await client.get(url)
        stop = time.perf_counter() + duration

        async def one_client() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < stop:
                r = await client.get(url)
                latencies.append(time.perf_counter() - now)
                if r.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "requests": n,
        "errors": errors,
    }


def _wait_ready(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def _measure(
    url: str, headers: dict[str, str], duration: float, concurrency: int
) -> dict[str, float]:
    """Drive the load from a separate process so it does not share a CPU loop with the server."""
    out = subprocess.run(
        [
            sys.executable,
            str(HERE),
            "load",
            url,
            json.dumps(headers),
            str(duration),
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out))


async def _seed(database_url: str) -> str:
    """A verified user and a full-scope API key, straight into the database."""
    from forkyard.db.engine import Database
    from forkyard.identity.models import ApiKey
    from forkyard.identity.service import create_user
    from forkyard.kit.crypto import random_token, token_hash

    db = Database(database_url)
    secret = "fy_" + random_token(30)
    try:
        async with db.transaction() as session:
            user = await create_user(
                session, email="bench@example.com", password=None, name="Bench", verified=True
            )
            assert user.personal_org_id
            session.add(
                ApiKey(
                    org_id=user.personal_org_id,
                    created_by=user.id,
                    name="bench",
                    prefix=secret[:10],
                    key_hash=token_hash(secret),
                    scopes=["read", "write"],
                )
            )
    finally:
        await db.dispose()
    return secret


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()

    from forkyard.db.migrate import upgrade
    from forkyard.runtime import EmbeddedPostgres

    tmp = Path(tempfile.mkdtemp(prefix="forkyard-bench-"))
    print(f"embedded PostgreSQL in {tmp} ...", file=sys.stderr)
    pg = EmbeddedPostgres(tmp)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        upgrade(pg.url)
        key = asyncio.run(_seed(pg.url))
        fy_port, bare_port = _free_port(), _free_port()
        env = {**os.environ}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HERE), "serve-forkyard", str(fy_port), pg.url, str(tmp)],
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )
        procs.append(
            subprocess.Popen([sys.executable, str(HERE), "serve-bare", str(bare_port)], env=env)
        )
        _wait_ready(f"http://127.0.0.1:{fy_port}/health/ready")
        _wait_ready(f"http://127.0.0.1:{bare_port}/")

        d, c = args.duration, args.concurrency
        results = {
            "bare hello world": _measure(f"http://127.0.0.1:{bare_port}/", {}, d, c),
            "GET /health/live": _measure(f"http://127.0.0.1:{fy_port}/health/live", {}, d, c),
            "GET /v1/auth/me (API key)": _measure(
                f"http://127.0.0.1:{fy_port}/v1/auth/me", {"Authorization": f"Bearer {key}"}, d, c
            ),
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        pg.stop()

    bare = results["bare hello world"]["rps"]
    print(f"\n{c} concurrent clients, {d:.0f} s each, one uvicorn process per app\n")
    print(f"{'target':28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8} {'errors':>7}")
    for name, r in results.items():
        print(
            f"{name:28} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"
            f" {r['rps'] / bare:8.0%} {int(r['errors']):7d}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve-forkyard":
        serve_forkyard(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "serve-bare":
        serve_bare(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        result = asyncio.run(
            _load(sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        )
        print(json.dumps(result))
    else:
        main()
