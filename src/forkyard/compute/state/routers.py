"""The routers of this package, for app.py."""

from fastapi import APIRouter

from forkyard.compute.state.checkpoints import router as checkpoints
from forkyard.compute.state.forks import router as forks
from forkyard.compute.state.images import router as base_images
from forkyard.compute.state.snapshots import router as snapshots

routers: list[APIRouter] = [checkpoints, snapshots, forks, base_images]
