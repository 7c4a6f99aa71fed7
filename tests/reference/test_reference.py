"""The generated reference and the SDK's typed layer stay in step with the snapshot."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from forkyard.reference import pysdk, site
from forkyard.reference.schema import load, operations


def test_a_page_for_every_operation_and_an_operation_for_every_page(tmp_path):
    spec = load()
    out = tmp_path / "reference"
    site.build(spec, out)
    ops = {o.slug: o for o in operations(spec)}
    pages = {p.stem for p in out.glob("*.html")} - {"index", "conventions"}
    assert set(ops) - pages == set(), "operations without a page"
    assert pages - set(ops) == set(), "pages for no operation"
    index = (out / "index.html").read_text()
    search = json.loads((out / "search.json").read_text())
    assert {item["id"] for item in search} == {o.id for o in ops.values()}
    for slug, op in ops.items():
        assert f'href="{slug}.html"' in index
        page = (out / f"{slug}.html").read_text()
        assert f">{op.method}</span>" in page and op.path.replace("{", "{") in page
        assert page.count('class="sample"') >= 3, slug  # TypeScript, Python, curl
        for lang in ("ts", "python", "curl"):
            ext = {"ts": "ts", "python": "py", "curl": "sh"}[lang]
            assert (out / "samples" / lang / f"{slug}.{ext}").is_file()
    conventions = (out / "conventions.html").read_text()
    for heading in ("Errors", "Ids", "Lists", "Authentication", "Rate limits", "Streams"):
        assert f">{heading}</h2>" in conventions


def test_tags_follow_the_user_index_order():
    order = [o.tag for o in operations(load())]
    groups = list(dict.fromkeys(order))
    assert order == sorted(order, key=groups.index), "an operation out of its tag's group"
    known = [t for t in groups if t in pysdk_order()]
    assert known == sorted(known, key=pysdk_order().index)


def pysdk_order() -> list[str]:
    from forkyard.reference.schema import TAG_ORDER

    return TAG_ORDER


MYPY = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null"]


def _mypy(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MYPY, str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_python_sample_type_checks(tmp_path: Path) -> None:
    """mypy --strict over the Python sample of every operation, against the SDK's types (the
    TypeScript samples get the same from tsc: tests/sdk_typescript/test_samples.py); where the
    SDK has a method of its own, the sample uses it instead of the generated layer."""
    from forkyard.reference import samples

    spec = load()
    ops = operations(spec)
    for op in ops:
        code = samples.python(op, spec)
        if op.id in samples.FRIENDLY:
            assert "fy.api." not in code, op.id
        else:
            assert re.search(r"fy\.api\.\w+\.\w+\(", code), op.id
        (tmp_path / f"{op.slug.replace('-', '_')}.py").write_text(code + "\n")
    result = _mypy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"in {len(ops)} source files" in result.stdout


def test_a_python_sample_that_misuses_the_sdk_fails(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from forkyard_sdk import Forkyard\n"
        "inst = Forkyard().instances.get('inst_1')\n"
        "inst.files.write(1, 'a')\n"
        "print(inst.exec('true').exitcode)\n"
    )
    result = _mypy(tmp_path)
    assert result.returncode != 0
    assert result.stdout.count("bad.py:") == 2, result.stdout


def test_the_sdks_share_the_friendly_operations() -> None:
    """Each friendly sample names the methods both SDKs have (the TS side is checked by tsc)."""
    from forkyard_sdk import Instance
    from forkyard_sdk.client import Files, Instances

    from forkyard.reference import samples

    spec = load()
    ops = {o.id: o for o in operations(spec)}
    owners = {"inst.files": Files, "inst": Instance, "fy.instances": Instances}
    for op_id, friendly in samples.FRIENDLY.items():
        assert op_id in ops, f"{op_id} is in FRIENDLY but not in the snapshot"
        calls = re.findall(
            r"\b(inst\.files|inst|fy\.instances)\.(\w+)\(", "\n".join(friendly.python)
        )
        assert calls, op_id
        for owner, name in calls:
            assert callable(getattr(owners[owner], name, None)), (op_id, owner, name)


def test_the_sdk_generated_layer_matches_the_snapshot():
    assert pysdk.TARGET.read_text() == pysdk.formatted(load()), (
        "sdk/python/forkyard_sdk/_generated.py is stale: run `make docs`"
    )


async def test_the_reference_is_served(client):
    r = await client.get("/reference")
    assert r.status_code in (307, 308) and r.headers["location"].endswith("reference/")
    index = await client.get("/reference/")
    assert index.status_code == 200 and "instances-create_instance_route.html" in index.text
    page = await client.get("/reference/exec-run_command.html")
    assert page.status_code == 200 and "/v1/instances/{id}/exec" in page.text
    search = await client.get("/reference/search.json")
    assert any(item["id"] == "exec-run_command" for item in search.json())
    assert (await client.get("/reference/nothing-here.html")).status_code == 404
