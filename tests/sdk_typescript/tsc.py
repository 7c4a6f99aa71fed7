"""Type-check a directory of TypeScript samples against the TypeScript SDK: what the API
reference's test calls on its generated samples."""

from __future__ import annotations

import subprocess
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"


def typecheck_samples(directory: Path) -> subprocess.CompletedProcess[str]:
    """`tsc --noEmit` over every .ts under `directory`, which import "@forkyard/sdk"; the
    diagnostics (file(line,col): error TS...) are in stdout."""
    return subprocess.run(
        ["node", str(SDK / "scripts" / "check-samples.mjs"), str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
    )
