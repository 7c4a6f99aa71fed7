"""Code samples for an operation, made from its schema: curl, Python (forkyard_sdk) and
TypeScript (the TS SDK). Path parameters take example ids (`inst_01J0...`) a reader replaces;
the test that runs the samples replaces them the same way."""

from __future__ import annotations

import json
import shlex
from typing import Any

from forkyard.reference.schema import Operation, example, example_id, non_null, required_example

# TypeScript methods of the TS SDK (sdk/typescript) by operation id; every other operation's
# sample uses its generic `fy.request(method, path, {body, query})`. Hook for the TS SDK's
# owners: add a line here when a resource method exists, and `make docs` writes every TS
# sample to docs/build/reference/samples/ts/<operation id>.ts for `tsc` to check.
TS_METHODS: dict[str, str] = {
    "instances-create_instance_route": "fy.instances.create({body})",
    "instances-get_instance_route": "fy.instances.get({id})",
    "instances-delete_instance": "(await fy.instances.get({id})).delete()",
}


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

    args = [repr(v) for v in path_values(op).values()]
    body = body_value(op, spec)
    if body is not None:
        args.append(_py_literal(body) if op.body_required else f"body={_py_literal(body)}")
    args += [f"{_arg(k)}={_py_literal(v)}" for k, v in query_values(op, spec).items()]
    call = f"fy.api.{op.tag}.{op.method_name}({', '.join(args)})"
    _, kind = _return(op)
    head = [
        "from forkyard_sdk import Forkyard",
        "",
        "fy = Forkyard()  # reads FORKYARD_API_KEY and FORKYARD_BASE_URL",
    ]
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
    body = body_value(op, spec)
    query = query_values(op, spec)
    ids = path_values(op)
    template = TS_METHODS.get(op.id)
    if template:
        call = template.format(
            body=_ts_literal(body or {}), id=_ts_literal(next(iter(ids.values()), ""))
        )
    else:
        options = []
        if body is not None:
            options.append(f"body: {_ts_literal(body)}")
        if query:
            options.append(f"query: {_ts_literal(query)}")
        opts = f", {{ {', '.join(options)} }}" if options else ""
        call = f"fy.request({_ts_literal(op.method)}, {_ts_literal(filled_path(op))}{opts})"
    return "\n".join(
        [
            'import { Forkyard } from "@forkyard/sdk";',
            "",
            "const fy = new Forkyard(); // reads FORKYARD_API_KEY and FORKYARD_BASE_URL",
            f"const result = await {call};",
            "console.log(result);",
        ]
    )
