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
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from harness import PASSWORD, first_instance, load, platform


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


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=4, help="blocks per condition")
    ap.add_argument("--per-block", type=int, default=100)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    async with platform(webhooks_allow_private=True) as p:
        print(load())
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
    server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
