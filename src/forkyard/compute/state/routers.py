"""The routers of this package, for app.py."""

from fastapi import APIRouter

from forkyard.compute.state.checkpoints import router as checkpoints
from forkyard.compute.state.images import router as base_images

routers: list[APIRouter] = [checkpoints, base_images]
