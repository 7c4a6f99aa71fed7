"""`forkyard`: serve, worker, migrate, openapi and admin commands; the client commands (login,
instances, exec, cp, fork, checkpoint, rollback, images, keys) are in cli/client.py, `forward`
in cli/forward.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from forkyard.cli.client import register as register_client_commands
from forkyard.cli.forward import forward
from forkyard.config import Settings, ensure_secrets, get_settings

app = typer.Typer(help="Forkyard: isolated Linux instances you can fork.", no_args_is_help=True)
admin = typer.Typer(help="Administration.", no_args_is_help=True)
app.add_typer(admin, name="admin")
register_client_commands(app)  # login, instances, exec, cp, ... through the SDK
app.command()(forward)
console = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="Where Forkyard keeps its state.")]


def _settings(data_dir: Path | None = None) -> Settings:
    if data_dir is not None:
        os.environ["FORKYARD_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    from forkyard.kit.logging import configure_logging

    settings = ensure_secrets(get_settings())
    configure_logging(settings.log_level, settings.log_json)
    return settings


class _StopRequested(BaseException):
    """A signal asked serve to stop before the API was up: unwind through the clean-up."""


def _raise_stop(sig: int, frame: object) -> None:
    raise _StopRequested(sig)


def _already_stopping(sig: int, frame: object) -> None:
    console.print(f"Still stopping (signal {sig} ignored): instances, node, database...")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = Path(".forkyard"),
    keep_instances: Annotated[
        bool,
        typer.Option(
            "--keep-instances",
            help="On exit, leave the local node and its instances running; "
            "the next serve on this data dir adopts them.",
        ),
    ] = False,
) -> None:
    """Run the API and the background worker (and the embedded database when no URL is set)."""
    from forkyard.app import create_app
    from forkyard.runtime import LocalNode, ensure_node_token, prepare_database

    # SIGTERM (systemd, containers, kill) stops serve exactly as Ctrl-C does: every signal
    # unwinds through the clean-up below, in order: API and worker, node, database.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_stop)
    settings = _settings(data_dir)
    embedded = None
    local_node: LocalNode | None = None
    try:
        with console.status("Starting the database and applying migrations..."):
            embedded = prepare_database(settings)
        ensure_node_token(settings)
        if settings.local_node:
            local_node = LocalNode(settings, f"http://{host}:{port}")
            local_node.start(detached_log=keep_instances)
            console.print(
                f"Local compute node {'adopted' if local_node.adopted else 'starting'} "
                f"(pid {local_node.pid}, data: {local_node.data_dir})"
            )
        console.print(
            f"[bold green]Forkyard[/] API listening on http://{host}:{port}  (data: {settings.data_dir})"
        )
        if embedded is not None:
            console.print(f"Embedded PostgreSQL: {settings.data_dir / 'pg'}")
        server = _Server(
            uvicorn.Config(
                create_app(settings, ssh_gateway=True),
                host=host,
                port=port,
                log_config=None,
                proxy_headers=False,
                # No `Server: uvicorn` on our answers, nor next to a preview app's own Server.
                server_header=False,
            )
        )
        server.run()
    except _StopRequested:
        pass
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _already_stopping)
        if local_node is not None:
            if keep_instances:
                console.print(
                    f"Leaving the local node (pid {local_node.pid}) and its instances running"
                )
            local_node.stop(keep_instances=keep_instances)
        if embedded is not None:
            embedded.stop()


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the signal that stopped it: uvicorn raises it again
    once its own shutdown is done, and a re-raised SIGTERM kills the process before any
    clean-up of ours runs."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@app.command()
def worker(data_dir: DataDir = Path(".forkyard")) -> None:
    """Run only the background worker (for more worker capacity beside `serve`)."""
    from forkyard.db.engine import Database
    from forkyard.jobs.worker import Worker
    from forkyard.runtime import prepare_database
    from forkyard.tasks import load_all_tasks

    settings = _settings(data_dir)
    embedded = prepare_database(settings)
    load_all_tasks()

    async def main() -> None:
        assert settings.database_url
        db = Database(settings.database_url)
        try:
            await Worker(db, settings, concurrency=settings.worker_concurrency).run()
        finally:
            await db.dispose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        if embedded is not None:
            embedded.stop()


@app.command()
def node(
    control_plane: Annotated[str, typer.Option("--control-plane", help="The control plane's URL.")],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FORKYARD_NODE_TOKEN",
            help="The cluster's node token (prefer FORKYARD_NODE_TOKEN or --token-file: a "
            "command line is readable by every user of the machine).",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="Read the cluster's node token from this file."),
    ] = None,
    data_dir: DataDir = Path(".forkyard/node"),
    listen: Annotated[
        str, typer.Option(help="host:port for the node API (port 0 picks one).")
    ] = "127.0.0.1:0",
    relay_port: Annotated[
        int,
        typer.Option(
            help="Port of the port relay (preview URLs, tunnels, ssh -L), on --listen's host; "
            "0 picks one. Open it to the control plane as the node API is."
        ),
    ] = 0,
    name: Annotated[str | None, typer.Option(help="Server name (default: hostname).")] = None,
    advertise_host: Annotated[
        str | None, typer.Option(help="Host the control plane should call.")
    ] = None,
    advertise_url: Annotated[
        str | None,
        typer.Option(help="Full URL the control plane should call (https behind a TLS proxy)."),
    ] = None,
    cgroup_parent: Annotated[
        str | None,
        typer.Option(
            help="Cgroup under which instances live (default forkyard-<installation id>)."
        ),
    ] = None,
) -> None:
    """Run a compute server: the sandbox driver and its API, registered with a control plane."""
    import signal
    import socket

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from forkyard.node.installation import NodeIdentityInUse, lock_holder
    from forkyard.node.runner import Node, NodeConfig

    settings = _settings()
    if token_file is not None:
        token = token_file.read_text().strip()
    if not token:
        console.print("[red]Give the node token: FORKYARD_NODE_TOKEN, --token-file or --token.[/]")
        raise typer.Exit(2)
    if advertise_url is not None and not advertise_url.startswith(("http://", "https://")):
        console.print("[red]--advertise-url must be an http:// or https:// URL.[/]")
        raise typer.Exit(2)
    if holder := lock_holder(data_dir.resolve()):  # before the image build; run() checks again
        console.print(f"[red]{NodeIdentityInUse(data_dir.resolve(), holder)}[/]")
        raise typer.Exit(3)
    host, _, port = listen.rpartition(":")
    config = NodeConfig(
        control_plane=control_plane.rstrip("/"),
        token=token,
        data_dir=data_dir.resolve(),
        name=name or socket.gethostname(),
        host=host or "127.0.0.1",
        port=int(port or 0),
        relay_port=relay_port,
        advertise_host=advertise_host,
        advertise_url=advertise_url.rstrip("/") if advertise_url else None,
        image_cache=settings.image_cache_dir,
        cgroup_parent=cgroup_parent,
    )
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(
            "Preparing the default image (first run builds it: about a minute)..."
        )

        def on_progress(line: str) -> None:
            progress.update(task, description=f"Building the default image: {line[:70]}")

        runner = Node(config, progress=on_progress)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.stop)
            ready = asyncio.Event()
            run = asyncio.create_task(runner.run(ready))
            await asyncio.wait(
                {run, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            progress.stop()
            if ready.is_set():
                console.print(
                    f"[bold green]Node[/] {config.name} serving at {runner.url}, registered as {runner.server_id}"
                )
            await run

        try:
            asyncio.run(main())
        except NodeIdentityInUse as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(3) from None


@app.command()
def migrate(data_dir: DataDir = Path(".forkyard")) -> None:
    """Apply database migrations and exit."""
    from forkyard.db.migrate import current_revision
    from forkyard.runtime import prepare_database

    settings = _settings(data_dir)
    embedded = prepare_database(settings)
    assert settings.database_url
    console.print(f"Database at revision {current_revision(settings.database_url)}")
    if embedded is not None:
        embedded.stop()


@app.command()
def openapi() -> None:
    """Print the OpenAPI schema (the source of docs/openapi.snapshot.json)."""
    from forkyard.app import create_app

    schema = create_app(Settings(env="development")).openapi()
    typer.echo(json.dumps(schema, indent=2, sort_keys=True))


@app.command()
def mcp(
    base_url: Annotated[
        str, typer.Option(envvar="FORKYARD_BASE_URL", help="The Forkyard API to call.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="FORKYARD_API_KEY", help="An API key (`fy_...`).")
    ] = None,
) -> None:
    """Run the MCP server on stdin/stdout, for an assistant that starts it (tools: instances,
    exec, files, checkpoints, forks)."""
    if not api_key:
        console.print("Set FORKYARD_API_KEY (or pass --api-key): an API key of your org.")
        raise typer.Exit(2)
    from forkyard.mcp.stdio import serve_stdio

    serve_stdio(api_key, base_url)


@admin.command("create-user")
def create_user_command(
    email: Annotated[str, typer.Option(help="Email address (verified on creation).")],
    password: Annotated[str, typer.Option(help="Password.", prompt=True, hide_input=True)],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    staff: Annotated[bool, typer.Option("--staff", help="Make the user staff.")] = False,
    data_dir: DataDir = Path(".forkyard"),
) -> None:
    """Create a user (and their personal org) directly in the database."""
    from forkyard.db.engine import Database
    from forkyard.identity.passwords import password_problem
    from forkyard.identity.service import create_user, find_user_by_email
    from forkyard.runtime import prepare_database

    settings = _settings(data_dir)
    problem = password_problem(password, settings.password_min_length, email=email)
    if problem:
        console.print(f"[red]{problem}[/]")
        raise typer.Exit(2)
    embedded = prepare_database(settings)

    async def main() -> str:
        assert settings.database_url
        db = Database(settings.database_url)
        try:
            async with db.transaction() as session:
                if await find_user_by_email(session, email):
                    console.print(f"[red]A user with email {email} already exists.[/]")
                    raise typer.Exit(1)
                user = await create_user(
                    session,
                    email=email,
                    password=password,
                    name=name,
                    is_staff=staff,
                    verified=True,
                )
                return user.id
        finally:
            await db.dispose()

    try:
        user_id = asyncio.run(main())
        console.print(f"Created {'staff ' if staff else ''}user {user_id} <{email}>")
    finally:
        if embedded is not None:
            embedded.stop()
