"""The two routers of exec and files (tags exec, files): each route module adds its routes here,
and the package's `__init__` imports them in the order the reference lists them."""

from forkyard.identity.routing import protected_router

exec_router = protected_router("exec", prefix="/v1/instances")
files_router = protected_router("files", prefix="/v1/instances")
