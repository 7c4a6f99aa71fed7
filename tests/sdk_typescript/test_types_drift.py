"""sdk/typescript/src/schema.ts is what openapi-typescript makes of docs/openapi.snapshot.json."""

from __future__ import annotations

import json
import subprocess

from tests.sdk_typescript.conftest import SDK, node_tools


def test_generated_types_match_the_snapshot() -> None:
    node_tools()
    script = json.loads((SDK / "package.json").read_text())["scripts"]["generate"]
    # The same command as `npm run generate`, to stdout instead of the file.
    command = script.split(" -o ")[0].split()
    result = subprocess.run(
        ["npx", "--no-install", *command], cwd=SDK, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    committed = (SDK / "src" / "schema.ts").read_text()
    assert result.stdout == committed, (
        "sdk/typescript/src/schema.ts is stale: run `npm run generate` in sdk/typescript"
    )
