"""Reaching an instance: figures for the SSH gateway (`ssh host true` round trip).

Against a running installation (`forkyard serve`), with a key on your account and an instance:

    python bench/access.py ssh --instance inst_... --identity ~/.ssh/id_ed25519 [--port 2222]

Prints p50/p90/max of N sequential `ssh -p PORT inst@host true` runs (a new connection each:
key exchange, sign-in, a command through the node and the agent). Aim: under 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time


def ssh_true(host: str, port: int, instance: str, identity: str, runs: int) -> list[float]:
    argv = [
        "ssh", "-p", str(port), "-i", identity, "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=accept-new",
        f"{instance}@{host}", "true",
    ]  # fmt: skip
    subprocess.run(argv, check=True)  # warm: known_hosts, the node's session route
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("ssh")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=2222)
    s.add_argument("--instance", required=True)
    s.add_argument("--identity", required=True)
    s.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    times = ssh_true(args.host, args.port, args.instance, args.identity, args.runs)
    print(
        f"ssh host true: p50 {statistics.median(times):.1f} ms, "
        f"p90 {times[int(len(times) * 0.9) - 1]:.1f} ms, max {times[-1]:.1f} ms ({len(times)} runs)"
    )


if __name__ == "__main__":
    main()
