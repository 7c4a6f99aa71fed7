"""The static API reference: an index grouped by tag (in the order of the user's reference
index), a page per operation at `<operation id>.html`, the API conventions, and a JSON search
index with a little script. `make docs` writes it to docs/build/reference; `forkyard serve`
serves it at /reference."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

from forkyard.reference import samples
from forkyard.reference.schema import (
    ROOT,
    Operation,
    example,
    non_null,
    operations,
    ref_name,
    resolve,
)

BUILD = ROOT / "docs" / "build" / "reference"
CONVENTIONS = ROOT / "docs" / "api-conventions.md"

ACCESS = {
    "public": "Public: no credentials.",
    "org": "A signed-in session, or an API key of the org.",
    "account": "A signed-in session, or an API key with the `account` scope.",
    "session": "A signed-in browser session only; API keys are refused.",
    "sudo": "A signed-in session with a fresh sudo grant (`POST /v1/auth/sudo`).",
    "staff": "Staff only; everyone else gets 404.",
    "node": "Compute servers, with the node token.",
}

# Error modules of the server by the tags whose operations can answer their codes.
ERROR_AREAS: dict[str, tuple[str, ...]] = {
    "forkyard.compute.errors": ("instances", "exec", "files", "profiles", "vms"),
    "forkyard.compute.state.errors": ("checkpoints", "snapshots", "base_images", "instances"),
    "forkyard.node.errors": ("instances", "exec", "files", "checkpoints", "snapshots", "vms"),
    "forkyard.identity.errors": ("auth", "api_keys", "sessions", "account_ssh_keys"),
    "forkyard.identity.mfa.errors": ("auth",),
    "forkyard.orgs.errors": ("orgs", "members", "invitations"),
    "forkyard.forwards.errors": ("port_forwards",),
}


def area_codes() -> dict[str, list[tuple[str, int]]]:
    """tag -> [(code, status)] of the error classes of its domain."""
    from forkyard.reference.pysdk import error_classes

    out: dict[str, list[tuple[str, int]]] = {}
    for cls in error_classes():
        tags = ERROR_AREAS.get(cls.module)
        if tags is None and cls.module != "forkyard.kit.errors":
            tags = (cls.module.split(".")[1],)  # forkyard.<domain>.errors
        for tag in tags or ():
            if (cls.code, cls.status) not in out.setdefault(tag, []):
                out[tag].append((cls.code, cls.status))
    return out


def general_codes(op: Operation) -> list[tuple[int, str, str]]:
    """The codes any operation of this shape can answer: (status, code, when)."""
    codes: list[tuple[int, str, str]] = []
    if op.body_schema is not None:
        codes.append((400, "malformed_json", "the body is not JSON"))
    if op.auth != "public":
        codes.append((401, "unauthenticated", "no credentials, or expired ones"))
    if op.auth in ("org", "account"):
        codes.append((403, "forbidden", "the role or the key's scopes do not allow it"))
    if op.auth in ("session", "sudo"):
        codes.append((401, "cookie_session_required", "called with an API key"))
    if op.auth == "sudo":
        codes.append((403, "sudo_required", "no fresh sudo grant"))
    if op.path_params or op.auth == "staff":
        codes.append((404, "not_found", "unknown id, or one of another org"))
    if op.method == "POST":
        codes.append((409, "idempotency_conflict", "an Idempotency-Key reused with another body"))
    if op.body_schema is not None or op.params:
        codes.append((422, "validation_failed", "the parameters or body do not fit the schema"))
    codes.append((429, "rate_limited", "too many requests; see Retry-After"))
    return sorted(codes)


def md_inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", out)


def markdown(text: str) -> str:
    """The little Markdown the conventions page and descriptions use: headings, paragraphs,
    lists, fenced code."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if para:
            out.append(f"<p>{md_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{md_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        if code is not None:
            if line.startswith("```"):
                out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("```"):
            flush()
            code = []
        elif line.startswith("#"):
            flush()
            level = len(line) - len(line.lstrip("#"))
            title = line.lstrip("#").strip()
            anchor = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            out.append(f'<h{level} id="{anchor}">{md_inline(title)}</h{level}>')
        elif line.startswith("- "):
            if para:
                flush()
            items.append(line[2:].strip())
        elif not line.strip():
            flush()
        elif items and line.startswith("  "):
            items[-1] += " " + line.strip()
        else:
            para.append(line.strip())
    flush()
    return "\n".join(out)


def type_label(schema: dict[str, Any]) -> str:
    name = ref_name(schema)
    if name:
        return f'<a href="#schema-{name}">{name}</a>'
    if "anyOf" in schema:
        return " | ".join(type_label(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(f"<code>{html.escape(json.dumps(v))}</code>" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {type_label(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {type_label(schema['additionalProperties'])}"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)


def constraints(schema: dict[str, Any]) -> str:
    s = non_null(schema)
    bits = []
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("exclusiveMinimum", ">"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("pattern", "pattern"),
        ("default", "default"),
    ):
        if key in s and s[key] is not None:
            bits.append(f"{label} <code>{html.escape(json.dumps(s[key]))}</code>")
    return ", ".join(bits)


def referenced(spec: dict[str, Any], schema: dict[str, Any] | None, seen: list[str]) -> None:
    """Collect every component schema reachable from `schema`, in order of first use."""
    if not isinstance(schema, dict):
        return
    name = ref_name(schema)
    if name:
        if name in seen:
            return
        seen.append(name)
        schema = resolve(spec, schema)
    for key in ("anyOf", "allOf", "oneOf"):
        for sub in schema.get(key, []):
            referenced(spec, sub, seen)
    for sub in schema.get("properties", {}).values():
        referenced(spec, sub, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            referenced(spec, schema[key], seen)


def schema_table(spec: dict[str, Any], name: str) -> str:
    schema = spec["components"]["schemas"][name]
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    rows = []
    for prop, sub in props.items():
        desc = sub.get("description") or non_null(sub).get("description") or ""
        rows.append(
            f"<tr><td><code>{html.escape(prop)}</code>{' <em>required</em>' if prop in required else ''}</td>"
            f"<td>{type_label(sub)}</td><td>{md_inline(desc)} {constraints(sub)}</td></tr>"
        )
    body = (
        "<table><tr><th>Field</th><th>Type</th><th>Notes</th></tr>" + "".join(rows) + "</table>"
        if rows
        else "<p>An object.</p>"
    )
    return f'<section class="schema" id="schema-{name}"><h3>{name}</h3>{body}</section>'


def page(title: str, content: str, depth: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · Forkyard API reference</title>
<link rel="stylesheet" href="{depth}style.css"></head>
<body><header><a href="{depth}index.html">Forkyard API reference</a>
<a href="{depth}conventions.html">Conventions</a>
<input id="search" type="search" placeholder="Search operations" autocomplete="off">
<ul id="results"></ul></header>
<main>{content}</main>
<script src="{depth}search.js"></script></body></html>
"""


def code_block(lang: str, code: str) -> str:
    return f'<pre class="sample" data-lang="{lang}"><code>{html.escape(code)}</code></pre>'


def operation_page(
    spec: dict[str, Any], op: Operation, areas: dict[str, list[tuple[str, int]]]
) -> str:
    parts = [
        f'<p class="tag"><a href="index.html#tag-{op.tag}">{op.tag}</a></p>',
        f'<h1><span class="method {op.method.lower()}">{op.method}</span> <code>{html.escape(op.path)}</code></h1>',
        f'<p class="opid">Operation id <code>{op.id}</code></p>',
        f'<p class="summary">{md_inline(op.summary)}</p>',
    ]
    description = op.description.split("\n\nAccess:")[0]
    if description and description.strip() != op.summary.strip():
        parts.append(markdown(description))
    scope = "read" if op.method == "GET" else "write"
    access = ACCESS.get(op.auth, op.auth)
    if op.auth == "org":
        access += f" An API key needs the <code>{scope}</code> scope."
    parts.append(f"<h2>Authentication</h2><p><strong>{op.auth}</strong>: {md_inline(access)}</p>")
    if op.params:
        rows = "".join(
            f"<tr><td><code>{html.escape(p.name)}</code>{' <em>required</em>' if p.required else ''}</td>"
            f"<td>{p.location}</td><td>{type_label(non_null(p.schema))}</td>"
            f"<td>{md_inline(p.description)} {constraints(p.schema)}</td></tr>"
            for p in op.params
        )
        parts.append(
            "<h2>Parameters</h2><table><tr><th>Name</th><th>In</th><th>Type</th><th>Notes</th></tr>"
            f"{rows}</table>"
        )
    seen: list[str] = []
    if op.body_schema is not None:
        parts.append(
            f"<h2>Request body</h2><p>{type_label(op.body_schema)}"
            f"{' (required)' if op.body_required else ''}</p>"
            + code_block("json", json.dumps(example(spec, op.body_schema), indent=2))
        )
        referenced(spec, op.body_schema, seen)
    parts.append("<h2>Responses</h2>")
    for status, answer in sorted(op.responses.items()):
        if status == "422":
            continue
        content = answer.get("content") or {}
        line = f"<h3>{status}</h3><p>{md_inline(answer.get('description', ''))}</p>"
        for ctype, media in content.items():
            schema = media.get("schema")
            if schema:
                line += f"<p><code>{ctype}</code>: {type_label(schema)}</p>"
                line += code_block("json", json.dumps(example(spec, schema), indent=2))
                referenced(spec, schema, seen)
            else:
                line += f"<p><code>{ctype}</code></p>"
        parts.append(line)
    rows = "".join(
        f"<tr><td>{status}</td><td><code>{code}</code></td><td>{md_inline(when)}</td></tr>"
        for status, code, when in general_codes(op)
    )
    area = [c for c in areas.get(op.tag, []) if c[0] not in {g[1] for g in general_codes(op)}]
    parts.append(
        '<h2>Errors</h2><p>Every error has the body of <a href="conventions.html#errors">the'
        " conventions</a>. This operation can answer:</p><table><tr><th>Status</th><th>Code</th>"
        f"<th>When</th></tr>{rows}</table>"
    )
    if area:
        parts.append(
            f"<p>and codes of the <code>{op.tag}</code> area: "
            + ", ".join(f"<code>{c}</code> ({s})" for c, s in sorted(area, key=lambda x: x[1]))
            + ".</p>"
        )
    parts.append("<h2>Samples</h2>")
    for lang, label, code in (
        ("typescript", "TypeScript", samples.typescript(op, spec)),
        ("python", "Python", samples.python(op, spec)),
        ("shell", "curl", samples.curl(op, spec)),
    ):
        parts.append(f"<h3>{label}</h3>" + code_block(lang, code))
    if seen:
        parts.append("<h2>Schemas</h2>" + "".join(schema_table(spec, n) for n in seen))
    return page(f"{op.method} {op.path}", "\n".join(parts))


def index_page(ops: list[Operation], spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    parts = [
        f"<h1>{html.escape(info.get('title', 'API'))} reference</h1>",
        f"<p>{md_inline(info.get('description', ''))} Version {info.get('version', '')}. "
        "Generated from <code>docs/openapi.snapshot.json</code>: each operation has a page with "
        "its parameters, request body, response shapes, errors, and samples in TypeScript, "
        'Python and curl. Read <a href="conventions.html">the conventions</a> first: errors, '
        "ids, pagination, idempotency, authentication, rate limits and streams.</p>",
        '<p>Try calls interactively at <a href="/docs">/docs</a>.</p>',
        "<nav><ul>"
        + "".join(f'<li><a href="#tag-{t}">{t}</a></li>' for t in dict.fromkeys(o.tag for o in ops))
        + "</ul></nav>",
    ]
    for tag in dict.fromkeys(o.tag for o in ops):
        rows = "".join(
            f'<tr><td><span class="method {o.method.lower()}">{o.method}</span></td>'
            f'<td><a href="{o.slug}.html"><code>{html.escape(o.path)}</code></a></td>'
            f"<td>{md_inline(o.summary)}</td></tr>"
            for o in ops
            if o.tag == tag
        )
        parts.append(f'<h2 id="tag-{tag}">{tag}</h2><table>{rows}</table>')
    return page("Index", "\n".join(parts))


STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d1f23}
header{position:sticky;top:0;background:#1d1f23;color:#fff;padding:.6em 1.5em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
#search{margin-left:auto;padding:.3em .6em;width:18em;border-radius:4px;border:0}
#results{position:absolute;right:1.5em;top:2.6em;background:#fff;color:#1d1f23;list-style:none;margin:0;padding:0;max-height:60vh;overflow:auto;box-shadow:0 2px 8px #0004;width:32em}
#results li a{display:block;padding:.3em .6em;color:#1d1f23;font-weight:400}
#results li a:hover,#results li.active a{background:#eef}
main{max-width:60em;margin:1.5em auto;padding:0 1.5em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
code{font:13px ui-monospace,monospace;background:#f3f3f5;padding:0 .2em;border-radius:3px}
pre{background:#1d1f23;color:#e8e8e8;padding:.8em;overflow:auto;border-radius:4px}
pre code{background:none;color:inherit}
.method{font:600 12px ui-monospace,monospace;padding:.15em .4em;border-radius:3px;color:#fff;background:#667}
.get{background:#2f7d32}.post{background:#1f5fbf}.patch,.put{background:#a66b00}.delete{background:#b3261e}
nav ul{columns:4;list-style:none;padding:0}
.tag a{color:#667}
"""

SEARCH_JS = """
(function(){
  var box=document.getElementById('search'),list=document.getElementById('results'),items=null;
  var base=document.currentScript.src.replace(/search\\.js$/,'');
  function load(cb){if(items)return cb();fetch(base+'search.json').then(function(r){return r.json()}).then(function(d){items=d;cb()})}
  function show(){
    var q=box.value.trim().toLowerCase();list.innerHTML='';if(!q)return;
    var words=q.split(/\\s+/);
    items.filter(function(it){var t=(it.method+' '+it.path+' '+it.id+' '+it.tag+' '+it.summary).toLowerCase();
      return words.every(function(w){return t.indexOf(w)>=0})}).slice(0,30).forEach(function(it){
      var li=document.createElement('li'),a=document.createElement('a');a.href=base+it.url;
      a.textContent=it.method+' '+it.path+' \\u2014 '+it.summary;li.appendChild(a);list.appendChild(li)});
  }
  box.addEventListener('input',function(){load(show)});
  box.addEventListener('keydown',function(e){if(e.key==='Enter'){var a=list.querySelector('a');if(a)location.href=a.href}});
})();
"""


def build(spec: dict[str, Any], out: Path = BUILD) -> list[Path]:
    """Write the whole site into `out` (replacing what was there); the operation pages."""
    ops = operations(spec)
    areas = area_codes()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "samples" / "ts").mkdir(parents=True)
    (tmp / "samples" / "python").mkdir()
    (tmp / "samples" / "curl").mkdir()
    written = []
    for op in ops:
        target = tmp / f"{op.slug}.html"
        target.write_text(operation_page(spec, op, areas))
        written.append(out / target.name)
        (tmp / "samples" / "ts" / f"{op.slug}.ts").write_text(samples.typescript(op, spec) + "\n")
        (tmp / "samples" / "python" / f"{op.slug}.py").write_text(samples.python(op, spec) + "\n")
        (tmp / "samples" / "curl" / f"{op.slug}.sh").write_text(samples.curl(op, spec) + "\n")
    (tmp / "index.html").write_text(index_page(ops, spec))
    conventions = markdown(CONVENTIONS.read_text()) if CONVENTIONS.exists() else ""
    (tmp / "conventions.html").write_text(page("Conventions", conventions))
    (tmp / "style.css").write_text(STYLE.lstrip())
    (tmp / "search.js").write_text(SEARCH_JS.lstrip())
    index = [
        {
            "id": o.id,
            "method": o.method,
            "path": o.path,
            "tag": o.tag,
            "summary": o.summary,
            "url": f"{o.slug}.html",
        }
        for o in ops
    ]
    (tmp / "search.json").write_text(json.dumps(index, indent=0))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return written
