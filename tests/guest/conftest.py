"""The guest agent run as a real process on the host, reached over a unix socket."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forkyard.node.agent_client import AgentClient

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="session")
def agent_socket(tmp_path_factory):
    sock = tmp_path_factory.mktemp("agent") / "agent.sock"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forkyard.guest", "--socket", str(sock)], env=env
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert proc.poll() is None, "agent exited"
        assert time.monotonic() < deadline, "agent did not start"
        time.sleep(0.01)
    yield sock
    proc.kill()
    proc.wait()


@pytest.fixture
async def agent(agent_socket):
    client = await AgentClient.connect(str(agent_socket))
    yield client
    await client.close()
