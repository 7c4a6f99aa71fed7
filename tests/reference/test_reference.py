"""The generated reference and the SDK's typed layer stay in step with the snapshot."""

from __future__ import annotations

import json
import re

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


def test_python_samples_compile_and_name_real_sdk_methods():
    from forkyard_sdk import Forkyard

    from forkyard.reference import samples

    spec = load()
    fy = Forkyard(api_key="fy_unused")
    for op in operations(spec):
        code = samples.python(op, spec)
        compile(code, op.slug, "exec")
        match = re.search(r"fy\.api\.(\w+)\.(\w+)\(", code)
        assert match, op.id
        assert callable(getattr(getattr(fy.api, match[1]), match[2])), op.id


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
