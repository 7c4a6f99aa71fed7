"""Code samples for an operation, made from its schema: curl, Python (forkyard_sdk) and
TypeScript (the TS SDK). Path parameters take example ids (`inst_01J0...`) a reader replaces;
the test that runs the samples replaces them the same way."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from string import Template
from typing import Any

from forkyard.reference.schema import Operation, example, example_id, non_null, required_example


@dataclass(frozen=True)
class Friendly:
    """An operation's samples through the SDKs' hand-written layer (`inst.exec(...)`) rather
    than the generated one (`fy.api.exec.run_command(...)`, `fy.request(...)`): lines of Python
    and of TypeScript, formatted with the sample's values as literals of the language:
    `$id`, a body or query field by name (`$command`, `$path`), `$kwargs` / `$body` for
    the whole body. The samples after them: every operation that has such a method in both
    SDKs; `make docs` writes them, tests type-check the TypeScript and run the Python."""

    python: tuple[str, ...]
    typescript: tuple[str, ...]


GET_PY = "inst = fy.instances.get($id)"
GET_TS = "const inst = await fy.instances.get($id);"

FRIENDLY: dict[str, Friendly] = {
    "instances-list_instances": Friendly(
        ("for inst in fy.instances.list():  # every page", "    print(inst.id, inst.status)"),
        (
            "for await (const inst of fy.instances.list()) {",
            "  console.log(inst.id, inst.status);",
            "}",
        ),
    ),
    "instances-create_instance_route": Friendly(
        (
            "inst = fy.instances.create($kwargs)  # waits until it runs",
            "print(inst.id, inst.status)",
        ),
        (
            "const inst = await fy.instances.create($body); // waits until it runs",
            "console.log(inst.id, inst.status);",
        ),
    ),
    "instances-get_instance_route": Friendly(
        (GET_PY, "print(inst.data)"), (GET_TS, "console.log(inst.data);")
    ),
    "instances-update_instance": Friendly(
        (GET_PY, "inst.update($kwargs)", "print(inst.data)"),
        (GET_TS, "await inst.update($body);", "console.log(inst.data);"),
    ),
    "instances-delete_instance": Friendly(
        (GET_PY, "inst.delete()"), (GET_TS, "await inst.delete();")
    ),
    "instances-fork_instance": Friendly(
        (
            GET_PY,
            "kids = inst.fork($count)  # each one running",
            "print([kid.id for kid in kids])",
        ),
        (
            GET_TS,
            "const kids = await inst.fork($count); // each one running",
            "console.log(kids.map((kid) => kid.id));",
        ),
    ),
    "exec-run_command": Friendly(
        (
            GET_PY,
            "result = inst.exec($command)",
            "print(result.exit_code, result.stdout, result.stderr)",
        ),
        (
            GET_TS,
            "const result = await inst.exec($command);",
            "console.log(result.exit_code, result.stdout, result.stderr);",
        ),
    ),
    "exec-stream_command": Friendly(
        (GET_PY, "for event in inst.exec_stream($command):", "    print(event.type, event.data)"),
        (
            GET_TS,
            "for await (const event of inst.execStream($command)) {",
            "  console.log(event);",
            "}",
        ),
    ),
    "files-read_file": Friendly(
        (GET_PY, "print(inst.files.read_text($path))"),
        (GET_TS, "console.log(await inst.files.readText($path));"),
    ),
    "files-write_file": Friendly(
        (GET_PY, "print(inst.files.write($path, $content))"),
        (GET_TS, "console.log(await inst.files.write($path, $content));"),
    ),
    "files-edit_file": Friendly(
        (GET_PY, "print(inst.files.edit($path, $old_str, $new_str))"),
        (GET_TS, "console.log(await inst.files.edit($path, $old_str, $new_str));"),
    ),
    "files-list_files": Friendly(
        (
            GET_PY,
            'for entry in inst.files.list("/root"):',
            '    print(entry["name"], entry["size"])',
        ),
        (
            GET_TS,
            'for (const entry of await inst.files.list("/root")) {',
            "  console.log(entry.name, entry.size);",
            "}",
        ),
    ),
    "checkpoints-list_checkpoints": Friendly(
        (GET_PY, "for cp in inst.checkpoints():", '    print(cp["id"], cp["name"])'),
        (
            GET_TS,
            "for await (const cp of inst.checkpoints()) {",
            "  console.log(cp.id, cp.name);",
            "}",
        ),
    ),
    "checkpoints-create_checkpoint": Friendly(
        (GET_PY, "cp = inst.checkpoint($name)", 'print(cp["id"])'),
        (GET_TS, "const cp = await inst.checkpoint($name);", "console.log(cp.id);"),
    ),
    "checkpoints-rollback": Friendly(
        (
            GET_PY,
            "inst.rollback($checkpoint_id)  # or the checkpoint itself",
            "print(inst.status)",
        ),
        (
            GET_TS,
            "await inst.rollback($checkpoint_id); // or the checkpoint itself",
            "console.log(inst.status);",
        ),
    ),
    "ssh-ssh_access": Friendly(
        (GET_PY, "access = inst.ssh_access()", 'print(access["command"])'),
        (GET_TS, "const access = await inst.sshAccess();", "console.log(access.command);"),
    ),
}


def _friendly(op: Operation, spec: dict[str, Any], lines: tuple[str, ...], literal: Any) -> str:
    values = {**query_values(op, spec), **(body_value(op, spec) or {})}
    fields = {k: literal(v) for k, v in values.items()}
    fields["id"] = literal(next(iter(path_values(op).values()), ""))
    fields["body"] = _ts_literal(body_value(op, spec) or {})
    fields["kwargs"] = ", ".join(f"{k}={_py_literal(v)}" for k, v in values.items())
    return "\n".join(Template(line).substitute(fields) for line in lines)


def path_values(op: Operation) -> dict[str, str]:
    return {p.name: example_id(p.name, op.path) for p in op.path_params}


def query_values(op: Operation, spec: dict[str, Any]) -> dict[str, Any]:
    """The query parameters a sample passes: the required ones."""
    return {
        p.name: example(spec, non_null(p.schema), p.name) for p in op.query_params if p.required
    }


def body_value(op: Operation, spec: dict[str, Any]) -> dict[str, Any] | None:
    if op.body_schema is None:
        return None
    return required_example(spec, op.body_schema)


def filled_path(op: Operation) -> str:
    path = op.path
    for name, value in path_values(op).items():
        path = path.replace("{" + name + "}", value)
    return path


def curl(op: Operation, spec: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    url = "$FORKYARD_BASE_URL" + filled_path(op)
    query = query_values(op, spec)
    if query:
        url += "?" + urlencode(query, doseq=True)
    parts = ["curl -sS"]
    if op.method != "GET":
        parts.append(f"-X {op.method}")
    parts.append(f'"{url}"')
    lines = [" ".join(parts)]
    if op.auth != "public":
        lines.append('-H "Authorization: Bearer $FORKYARD_API_KEY"')
    body = body_value(op, spec)
    if body is not None:
        lines.append("-H 'Content-Type: application/json'")
        lines.append("-d " + shlex.quote(json.dumps(body)))
    return " \\\n  ".join(lines)


def _py_literal(value: Any) -> str:
    return repr(value)


def python(op: Operation, spec: dict[str, Any]) -> str:
    from forkyard.reference.pysdk import _arg, _return

    head = [
        "from forkyard_sdk import Forkyard",
        "",
        "fy = Forkyard()  # reads FORKYARD_API_KEY and FORKYARD_BASE_URL",
    ]
    friendly = FRIENDLY.get(op.id)
    if friendly:
        return "\n".join([*head, _friendly(op, spec, friendly.python, _py_literal)])
    args = [repr(v) for v in path_values(op).values()]
    body = body_value(op, spec)
    if body is not None:
        args.append(_py_literal(body) if op.body_required else f"body={_py_literal(body)}")
    args += [f"{_arg(k)}={_py_literal(v)}" for k, v in query_values(op, spec).items()]
    call = f"fy.api.{op.tag}.{op.method_name}({', '.join(args)})"
    _, kind = _return(op)
    if kind == "stream":
        body_lines = [f"for event in {call}:", "    print(event.type, event.data)"]
    elif kind == "none":
        body_lines = [call]
    elif kind == "bytes":
        body_lines = [f"data = {call}", "print(data.decode(errors='replace'))"]
    else:
        body_lines = [f"result = {call}", "print(result)"]
    return "\n".join(head + body_lines)


def _ts_literal(value: Any) -> str:
    return json.dumps(value)


def typescript(op: Operation, spec: dict[str, Any]) -> str:
    head = [
        'import { Forkyard } from "@forkyard/sdk";',
        "",
        "const fy = new Forkyard(); // reads FORKYARD_API_KEY and FORKYARD_BASE_URL",
    ]
    friendly = FRIENDLY.get(op.id)
    if friendly:
        return "\n".join([*head, _friendly(op, spec, friendly.typescript, _ts_literal)])
    body = body_value(op, spec)
    query = query_values(op, spec)
    options = []
    if body is not None:
        options.append(f"body: {_ts_literal(body)}")
    if query:
        options.append(f"query: {_ts_literal(query)}")
    opts = f", {{ {', '.join(options)} }}" if options else ""
    call = f"fy.request({_ts_literal(op.method)}, {_ts_literal(filled_path(op))}{opts})"
    return "\n".join([*head, f"const result = await {call};", "console.log(result);"])
