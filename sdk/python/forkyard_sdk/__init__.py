"""The Forkyard SDK.

from forkyard_sdk import Forkyard

fy = Forkyard()  # FORKYARD_API_KEY, FORKYARD_BASE_URL
with fy.instances.create(memory_mb=512) as inst:
    print(inst.exec("uname -a").stdout)
"""

from forkyard_sdk import errors
from forkyard_sdk._transport import Event
from forkyard_sdk.aio import AsyncForkyard, AsyncInstance
from forkyard_sdk.client import ExecResult, Forkyard, Instance
from forkyard_sdk.errors import ForkyardError

__all__ = [
    "AsyncForkyard",
    "AsyncInstance",
    "Event",
    "ExecResult",
    "Forkyard",
    "ForkyardError",
    "Instance",
    "errors",
]
