"""The client side of `forkyard`, through the Python SDK: login, instances, exec, ssh, cp, fork,
checkpoint, rollback, images, keys. Tables on a terminal, `--json` for scripts, and errors as
one line with their code."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from forkyard_sdk import Forkyard

out = Console()
err = Console(stderr=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
instances_app = typer.Typer(
    help="Create, list, inspect and delete instances.", no_args_is_help=True
)


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "forkyard" / "config.json"


def load_config() -> dict[str, str]:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(data: dict[str, str]) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 before the key is written: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.chmod(path, 0o600)
    return path


def client() -> Forkyard:
    """The SDK client: FORKYARD_API_KEY and FORKYARD_BASE_URL win over the saved login."""
    from forkyard_sdk import Forkyard

    saved = load_config()
    key = os.environ.get("FORKYARD_API_KEY") or saved.get("api_key")
    url = os.environ.get("FORKYARD_BASE_URL") or saved.get("base_url")
    if not key:
        fail("not_logged_in", "Run `forkyard login` or set FORKYARD_API_KEY.")
    return Forkyard(api_key=key, base_url=url)


def fail(code: str, message: str, exit_code: int = 1) -> NoReturn:
    err.print(f"[red]error[/]: {code}: {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code)


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """Any error of the API (or of reaching it) as one line: `error: <code>: <message>`."""
    from forkyard_sdk import ForkyardError

    try:
        yield
    except ForkyardError as exc:
        fail(exc.code, exc.message)


def emit(data: Any, as_json: bool, columns: list[str] | None = None, title: str = "") -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    rows = data if isinstance(data, list) else [data]
    if columns is None:
        columns = list(rows[0]) if rows else []
    table = Table(title=title or None, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return str(value)


INSTANCE_COLUMNS = ["id", "name", "status", "image", "vcpus", "memory_mb", "disk_mb", "created_at"]


def login(
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="An API key (fy_...); asked for if not given.")
    ] = None,
    base_url: Annotated[
        str, typer.Option("--base-url", help="The Forkyard server.")
    ] = "http://127.0.0.1:8000",
    as_json: Json = False,
) -> None:
    """Check an API key against the server and keep it in your config dir (mode 0600)."""
    from forkyard_sdk import Forkyard

    key = api_key or typer.prompt("API key", hide_input=True)
    with api_errors(), Forkyard(api_key=key, base_url=base_url) as fy:
        me = fy.request("GET", "/v1/auth/me")
    path = save_config({"api_key": key, "base_url": base_url})
    user = me.get("user", me) if isinstance(me, dict) else {}
    result = {"config": str(path), "base_url": base_url, "email": user.get("email")}
    if as_json:
        emit(result, True)
    else:
        err.print(f"Logged in to {base_url} as {result['email']}; key kept in {path}")


@instances_app.command("ls")
def instances_ls(
    status: Annotated[str | None, typer.Option(help="Only instances in this status.")] = None,
    as_json: Json = False,
) -> None:
    """List the org's instances, newest first."""
    with api_errors(), client() as fy:
        rows = [i.data for i in fy.instances.list(status=status)]
    emit(rows, as_json, INSTANCE_COLUMNS)


@instances_app.command("create")
def instances_create(
    memory_mb: Annotated[int | None, typer.Option("--memory", help="Memory (MB).")] = None,
    disk_mb: Annotated[int | None, typer.Option("--disk", help="Disk (MB).")] = None,
    vcpus: Annotated[float | None, typer.Option(help="CPUs.")] = None,
    image: Annotated[str | None, typer.Option(help="Image name.")] = None,
    name: Annotated[str | None, typer.Option(help="A name.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Answer while provisioning.")] = False,
    as_json: Json = False,
) -> None:
    """Create an instance and wait until it runs."""
    fields = {
        k: v
        for k, v in {
            "memory_mb": memory_mb,
            "disk_mb": disk_mb,
            "vcpus": vcpus,
            "image": image,
            "name": name,
        }.items()
        if v is not None
    }
    with api_errors(), client() as fy:
        status = err.status("Creating the instance...") if err.is_terminal else None
        with status or contextlib.nullcontext():
            inst = fy.instances.create(wait=not no_wait, **fields)
    emit(inst.data, as_json, INSTANCE_COLUMNS)


@instances_app.command("get")
def instances_get(instance_id: str, as_json: Json = False) -> None:
    """Show one instance."""
    with api_errors(), client() as fy:
        data = fy.instances.get(instance_id).data
    if as_json:
        emit(data, True)
        return
    table = Table(show_header=False, show_edge=False)
    for key, value in data.items():
        table.add_row(key, _cell(value))
    out.print(table)


@instances_app.command("rm")
def instances_rm(
    instance_ids: Annotated[list[str], typer.Argument(help="Instances to delete.")],
    as_json: Json = False,
) -> None:
    """Delete instances."""
    done = []
    with api_errors(), client() as fy:
        for instance_id in instance_ids:
            done.append(dict(fy.api.instances.delete_instance(instance_id)))
    emit(done, as_json, ["id", "status"])


def exec_command(
    instance_id: str,
    command: Annotated[list[str], typer.Argument(help="The command, after `--`.")],
    cwd: Annotated[str | None, typer.Option(help="Working directory.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds before it is killed.")] = None,
    as_json: Json = False,
) -> None:
    """Run a command in an instance, streaming its output; exit with its exit code."""
    if command and command[0] == "--":  # kept by click when options are not parsed after ID
        command = command[1:]
    if not command:
        fail("bad_arguments", "Give a command after `--`.", 2)
    argv: str | list[str] = command[0] if len(command) == 1 else command
    code = 0
    with api_errors(), client() as fy:
        inst = fy.instances.get(instance_id)
        if as_json:
            result = inst.exec(argv, cwd=cwd, timeout_s=timeout)
            emit(result.__dict__, True)
            raise typer.Exit(result.exit_code)
        for event in inst.exec_stream(argv, cwd=cwd, timeout_s=timeout):
            if event.type in ("stdout", "stderr"):
                raw = event.data.get("data", "")
                chunk = (
                    base64.b64decode(raw)
                    if event.data.get("encoding") == "base64"
                    else raw.encode()
                )
                stream = sys.stdout if event.type == "stdout" else sys.stderr
                stream.buffer.write(chunk)
                stream.flush()
            elif event.type == "exit":
                code = int(event.data.get("exit_code") or 0)
            elif event.type == "error":
                fail(str(event.data.get("code", "exec_error")), str(event.data.get("message")))
    raise typer.Exit(code)


def _key_fingerprint(known_hosts_line: str) -> str:
    """`SHA256:...` of the key in a known_hosts line, computed as ssh-keygen computes it."""
    blob = base64.b64decode(known_hosts_line.split()[2])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def pin_host_key(access: dict[str, Any]) -> Path:
    """The CLI's own known_hosts, holding the gateway's key as the API states it.

    The API (reached with the user's key, over the URL they chose) is the trust anchor: ssh
    then refuses any other host key (StrictHostKeyChecking=yes) instead of asking the user to
    trust whatever answered first. The line is checked against the fingerprint too, so a
    garbled answer is refused rather than pinned. Lines of other gateways are kept."""
    line = access["known_hosts_line"].strip()
    try:
        stated = _key_fingerprint(line)
    except (IndexError, ValueError):  # not `host type base64`
        stated = None
    if stated != access["host_key_fingerprint"]:
        fail("host_key_mismatch", "The API's host key line does not match its fingerprint.")
    path = config_path().parent / "known_hosts"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    host = line.split()[0]
    try:
        kept = [ln for ln in path.read_text().splitlines() if ln.split()[:1] != [host]]
    except OSError:
        kept = []
    tmp = path.with_name(f"known_hosts.{os.getpid()}")
    tmp.write_text("".join(f"{ln}\n" for ln in [*kept, line]))
    tmp.replace(path)  # whole or not at all, even with two `forkyard ssh` at once
    return path


def ssh_command(
    instance_id: str,
    command: Annotated[
        list[str] | None, typer.Argument(help="A remote command (after `--`); none: a shell.")
    ] = None,
    identity: Annotated[
        Path | None, typer.Option("-i", "--identity", help="The private key to sign in with.")
    ] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the ssh command instead of running it.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Open a shell (or run a command) in an instance over SSH, with your account's SSH key."""
    if command and command[0] == "--":
        command = command[1:]
    with api_errors(), client() as fy:
        access: dict[str, Any] = dict(fy.api.ssh.ssh_access(instance_id))
    known_hosts = pin_host_key(access)
    argv = ["ssh", "-p", str(access["port"])]
    argv += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    if identity is not None:
        argv += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    argv += [f"{access['username']}@{access['host']}", *(command or [])]
    if as_json:
        emit(
            {
                "argv": argv,
                "command": shlex.join(argv),
                "known_hosts": str(known_hosts),
                "host_key_fingerprint": access["host_key_fingerprint"],
            },
            True,
        )
        return
    if print_only:
        sys.stdout.write(shlex.join(argv) + "\n")
        return
    program = shutil.which("ssh")
    if program is None:
        fail("ssh_not_found", "The OpenSSH client (ssh) is not installed.")
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: the terminal, signals and the exit status are ssh's own.
    os.execv(program, argv)  # noqa: S606 (an argv list, no shell: nothing to inject into)


def _remote(spec: str) -> tuple[str, str] | None:
    """`inst_...:/path` -> (instance, path); a local path -> None."""
    head, sep, tail = spec.partition(":")
    if sep and head and "/" not in head and tail.startswith("/"):
        return head, tail
    return None


def cp(
    source: Annotated[str, typer.Argument(help="A local path, or INSTANCE:/path.")],
    target: Annotated[str, typer.Argument(help="A local path, or INSTANCE:/path.")],
    as_json: Json = False,
) -> None:
    """Copy a file into an instance (`cp ./f ID:/root/f`) or out of it (`cp ID:/root/f ./f`)."""
    src, dst = _remote(source), _remote(target)
    if bool(src) == bool(dst):
        fail("bad_arguments", "Exactly one of SOURCE and TARGET is INSTANCE:/path.", 2)
    with api_errors(), client() as fy:
        if dst:
            data = Path(source).read_bytes()
            entry: Any = fy.instances.get(dst[0]).files.write(dst[1], data)
            result = {"to": target, "bytes": len(data), "path": entry.get("path")}
        else:
            assert src is not None
            data = fy.instances.get(src[0]).files.read(src[1])
            local = Path(target)
            if local.is_dir():
                local = local / Path(src[1]).name
            local.write_bytes(data)
            result = {"to": str(local), "bytes": len(data)}
    if as_json:
        emit(result, True)
    else:
        err.print(f"{result['bytes']} bytes -> {result['to']}")


def fork(
    instance_id: str,
    count: Annotated[int, typer.Option("-n", "--count", help="How many copies.")] = 1,
    as_json: Json = False,
) -> None:
    """Fork an instance into N running copies."""
    with api_errors(), client() as fy:
        kids = fy.instances.get(instance_id).fork(count)
    emit([k.data for k in kids], as_json, INSTANCE_COLUMNS)


CHECKPOINT_COLUMNS = ["id", "name", "reason", "data_bytes", "created_at"]


def checkpoint(
    instance_id: str,
    name: Annotated[str | None, typer.Option(help="A name for it.")] = None,
    as_json: Json = False,
) -> None:
    """Checkpoint an instance's filesystem."""
    with api_errors(), client() as fy:
        cp_ = fy.instances.get(instance_id).checkpoint(name)
    emit(dict(cp_), as_json, CHECKPOINT_COLUMNS)


def rollback(instance_id: str, checkpoint_id: str, as_json: Json = False) -> None:
    """Roll an instance back to a checkpoint."""
    with api_errors(), client() as fy:
        result = fy.instances.get(instance_id).rollback(checkpoint_id)
    if as_json:
        emit(result, True)
    else:
        emit(result["instance"], False, INSTANCE_COLUMNS, f"rolled back to {checkpoint_id}")


def images(as_json: Json = False) -> None:
    """List the images instances can start from."""
    with api_errors(), client() as fy:
        rows = list(fy.paginate("/v1/base-images"))
    emit(rows, as_json, ["id", "family", "version", "status", "current", "created_at"])


def keys(as_json: Json = False) -> None:
    """List the org's API keys."""
    with api_errors(), client() as fy:
        rows = list(fy.paginate("/v1/api-keys"))
    emit(rows, as_json, ["id", "name", "prefix", "scopes", "last_used_at", "revoked_at"])


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.add_typer(instances_app, name="instances")
    app.command(
        "exec", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
    )(exec_command)
    app.command(
        "ssh", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
    )(ssh_command)
    app.command()(cp)
    app.command()(fork)
    app.command()(checkpoint)
    app.command()(rollback)
    app.command()(images)
    app.command()(keys)
