"""TypeScript samples type-check against the SDK, and a wrong one does not."""

from __future__ import annotations

from pathlib import Path

from tests.sdk_typescript.conftest import SDK, node_tools
from tests.sdk_typescript.tsc import typecheck_samples


def test_the_sdks_samples_type_check() -> None:
    node_tools()
    result = typecheck_samples(SDK / "samples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_sample_that_misuses_the_sdk_fails(tmp_path: Path) -> None:
    node_tools()
    (tmp_path / "good.ts").write_text(
        'import { Forkyard } from "@forkyard/sdk";\n'
        "const inst = await new Forkyard().instances.create({ memory_mb: 512 });\n"
        "console.log((await inst.exec('true')).exit_code);\n"
    )
    (tmp_path / "bad.ts").write_text(
        'import { Forkyard } from "@forkyard/sdk";\n'
        "const inst = await new Forkyard().instances.create({ memory_mb: '512' });\n"
        "await inst.files.write('/a', 1);\n"
        "console.log((await inst.exec('true')).exitCode);\n"
    )
    result = typecheck_samples(tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if "error TS" in line]
    assert len(errors) == 3, result.stdout
    assert all("bad.ts" in line for line in errors)


def test_every_reference_sample_type_checks(tmp_path: Path) -> None:
    """The API reference's TypeScript sample of every operation in the snapshot."""
    import json

    from forkyard.reference import samples
    from forkyard.reference.schema import ROOT, operations

    node_tools()
    spec = json.loads((ROOT / "docs" / "openapi.snapshot.json").read_text())
    ops = operations(spec)
    for op in ops:
        (tmp_path / f"{op.slug}.ts").write_text(samples.typescript(op, spec) + "\n")
    assert len(list(tmp_path.glob("*.ts"))) == len(ops) > 100
    result = typecheck_samples(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
