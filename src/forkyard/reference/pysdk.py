"""The Python SDK's generated layer (sdk/python/forkyard_sdk/_generated.py): a TypedDict per
schema of the snapshot, and a method per operation, sync and async, grouped by tag. The error
codes come from the server's error classes. `make docs` rewrites it; a test fails when the
committed file differs from what the snapshot generates."""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forkyard.reference.schema import ROOT, Operation, non_null, operations, ref_name

TARGET = ROOT / "sdk" / "python" / "forkyard_sdk" / "_generated.py"


@dataclass(frozen=True)
class ErrorClass:
    module: str
    name: str
    code: str
    status: int


def error_classes() -> list[ErrorClass]:
    """Every error class of the server, read from the source of its `errors.py` modules (no
    import: a module that does not import today still documents its codes)."""
    src = ROOT / "src"
    found: dict[str, tuple[str, list[str], str | None, int | None]] = {}
    for path in sorted(src.glob("forkyard/**/errors.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            code: str | None = None
            status: int | None = None
            for stmt in node.body:
                target = value = None
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                    target, value = stmt.targets[0], stmt.value
                elif isinstance(stmt, ast.AnnAssign):
                    target, value = stmt.target, stmt.value
                if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
                    if target.id == "code" and isinstance(value.value, str):
                        code = value.value
                    elif target.id == "status_code" and isinstance(value.value, int):
                        status = value.value
            bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
            found[f"{module}.{node.name}"] = (module, bases, code, status)
    by_name = {key.rsplit(".", 1)[1]: key for key in found}

    def inherited(key: str, index: int) -> Any:
        seen = set()
        while key in found and key not in seen:
            seen.add(key)
            value = found[key][index]
            if value is not None:
                return value
            bases = found[key][1]
            key = by_name.get(bases[0].rsplit(".", 1)[-1], "") if bases else ""
        return None

    out = []
    for key, (module, _, _, _) in found.items():
        code, status = inherited(key, 2), inherited(key, 3)
        if code and status:
            out.append(ErrorClass(module, key.rsplit(".", 1)[1], code, status))
    return out


def error_codes() -> dict[str, tuple[int, str]]:
    """Every error code the server can answer: code -> (HTTP status, class name)."""
    codes: dict[str, tuple[int, str]] = {}
    for cls in error_classes():
        codes.setdefault(cls.code, (cls.status, cls.name))
    codes.setdefault("validation_failed", (422, "ValidationFailed"))
    return dict(sorted(codes.items()))


def py_type(schema: dict[str, Any] | None, quote: bool = False) -> str:
    if not schema:
        return "Any"
    name = ref_name(schema)
    if name:
        return f'"{name}"' if quote else name
    if "anyOf" in schema:
        parts = [py_type(s, quote) for s in schema["anyOf"]]
        return " | ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return "Literal[" + ", ".join(repr(v) for v in schema["enum"]) + "]"
    if "const" in schema:
        return f"Literal[{schema['const']!r}]"
    kind = schema.get("type")
    if kind == "null":
        return "None"
    if kind == "string":
        return "str"
    if kind == "integer":
        return "int"
    if kind == "number":
        return "float"
    if kind == "boolean":
        return "bool"
    if kind == "array":
        return f"list[{py_type(schema.get('items'), quote)}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"dict[str, {py_type(extra, quote)}]"
        return "dict[str, Any]"
    return "Any"


def _class_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def typed_dict(name: str, schema: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    cls = _class_name(name)
    fields = []
    for prop, sub in props.items():
        t = py_type(sub)
        fields.append((prop, t if prop in required else f"NotRequired[{t}]"))
    doc = (schema.get("description") or "").strip().splitlines()
    if not fields:
        return f"{cls} = dict[str, Any]\n"
    if any(not p.isidentifier() or keyword.iskeyword(p) for p, _ in fields):
        items = ", ".join(f"{p!r}: {t}" for p, t in fields)
        return f"{cls} = TypedDict({cls!r}, {{{items}}})\n"
    lines = [f"class {cls}(TypedDict):"]
    if doc:
        lines.append(f'    """{doc[0].replace(chr(34) * 3, "")}"""')
        lines.append("")
    lines += [f"    {p}: {t}" for p, t in fields]
    return "\n".join(lines) + "\n"


def _return(op: Operation) -> tuple[str, str]:
    """(annotation, kind): json, bytes, stream or none."""
    status, ctype, schema = op.success()
    if ctype == "text/event-stream":
        return "Iterator[Event]", "stream"
    if ctype and not ctype.endswith("json"):
        return "bytes", "bytes"
    if status == "204" or ctype is None:
        return "None", "none"
    return py_type(schema), "json"


def _arg(name: str) -> str:
    safe = name.replace("-", "_")
    return f"{safe}_" if keyword.iskeyword(safe) or safe in ("body", "self") else safe


def method(op: Operation, is_async: bool) -> str:
    ret, kind = _return(op)
    args = ["self"]
    for p in op.path_params:
        args.append(f"{_arg(p.name)}: str")
    body_t = py_type(op.body_schema) if op.body_schema else None
    if body_t and op.body_required:
        args.append(f"body: {body_t}")
    kw = []
    if body_t and not op.body_required:
        kw.append(f"body: {body_t} | None = None")
    for p in op.query_params:
        t = py_type(non_null(p.schema))
        if p.required:
            kw.insert(0, f"{_arg(p.name)}: {t}")
        else:
            kw.append(f"{_arg(p.name)}: {t} | None = None")
    if kw:
        args.append("*")
        args += kw
    path_map = ", ".join(f"{p.name!r}: {_arg(p.name)}" for p in op.path_params)
    query_map = ", ".join(f"{p.name!r}: {_arg(p.name)}" for p in op.query_params)
    call = f"{op.id!r}, {{{path_map}}}, {{{query_map}}}, {'body' if body_t else 'None'}, {kind!r}"
    summary = op.summary.replace('"""', "'''").replace("\\", "\\\\").strip() or op.id
    doc = f'        """{summary}\n\n        `{op.method} {op.path}` (reference: {op.slug}.html)"""'
    if kind == "stream":
        ret_async = "AsyncIterator[Event]"
        if is_async:
            return (
                f"    def {op.method_name}({', '.join(args)}) -> {ret_async}:\n{doc}\n"
                f"        return self._core.stream_op({call})\n"
            )
        return (
            f"    def {op.method_name}({', '.join(args)}) -> {ret}:\n{doc}\n"
            f"        return self._core.stream_op({call})\n"
        )
    if is_async:
        return (
            f"    async def {op.method_name}({', '.join(args)}) -> {ret}:\n{doc}\n"
            f"        return cast({ret!r}, await self._core.op({call}))\n"
        )
    return (
        f"    def {op.method_name}({', '.join(args)}) -> {ret}:\n{doc}\n"
        f"        return cast({ret!r}, self._core.op({call}))\n"
    )


def _tag_class(tag: str, is_async: bool) -> str:
    base = "".join(part.capitalize() for part in tag.split("_"))
    return f"Async{base}Api" if is_async else f"{base}Api"


def generate(spec: dict[str, Any]) -> str:
    ops = operations(spec)
    out = [
        '"""Generated from docs/openapi.snapshot.json by `make docs` (forkyard.reference.pysdk).',
        'Do not edit: a test fails when this file differs from what the snapshot generates."""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import AsyncIterator, Iterator",
        "from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, cast",
        "",
        "if TYPE_CHECKING:",
        "    from forkyard_sdk._transport import AsyncCore, Event, SyncCore",
        "",
        f"SNAPSHOT_VERSION = {spec.get('info', {}).get('version', '')!r}",
        "",
        "# operation id -> (method, path template)",
        "OPERATIONS: dict[str, tuple[str, str]] = {",
    ]
    out += [f"    {o.id!r}: ({o.method!r}, {o.path!r})," for o in ops]
    out += ["}", "", "# error code -> HTTP status (from the server's error classes)"]
    out.append("ERROR_CODES: dict[str, int] = {")
    out += [f"    {c!r}: {s}," for c, (s, _) in error_codes().items()]
    out += ["}", "", ""]
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        out.append(typed_dict(name, schema))
        out.append("")
    tags = list(dict.fromkeys(o.tag for o in ops))
    for is_async in (False, True):
        core = "AsyncCore" if is_async else "SyncCore"
        for tag in tags:
            out.append(f"class {_tag_class(tag, is_async)}:")
            out.append(f'    """Operations tagged `{tag}`."""')
            out.append("")
            out.append(f"    def __init__(self, core: {core}) -> None:")
            out.append("        self._core = core")
            out.append("")
            for op in ops:
                if op.tag == tag:
                    out.append(method(op, is_async))
            out.append("")
        cls = "AsyncApi" if is_async else "Api"
        out.append(f"class {cls}:")
        out.append('    """Every operation of the API, one attribute per tag."""')
        out.append("")
        out.append(f"    def __init__(self, core: {core}) -> None:")
        for tag in tags:
            out.append(f"        self.{tag} = {_tag_class(tag, is_async)}(core)")
        out.append("")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def formatted(spec: dict[str, Any]) -> str:
    """The generated module as ruff formats it (the committed file passes `ruff format`)."""
    import subprocess
    import sys

    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "format", "--stdin-filename", str(TARGET), "-"],
        input=generate(spec),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return result.stdout


def write(spec: dict[str, Any], target: Path = TARGET) -> None:
    target.write_text(formatted(spec))
