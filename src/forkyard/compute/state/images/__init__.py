"""Base images (tag base_images): versioned families, org-private or platform (staff-managed).

A version is either a node's built-in rootfs (the platform `default` family's version 1 is the
node's Debian minbase) or a store layer on one server, stacked under each instance's own disk.
`POST /v1/images/prepare` builds a new version as a background job; `promote` makes a ready
version the family's current one. An instance pins its version at first boot: instances already
running keep their image, new ones get the current version.

Recipes (`_build_in_sandbox`): a snapshot's layer is shared as is; otherwise a build sandbox
`build-<image id>` boots, on the base image's stack, or (a `suite` recipe) on the empty `scratch`
rootfs over a disk the node has just debootstrapped. `packages` on a base image are downloaded by
the node (the host's apt, resolving against the image's dpkg status) into the sandbox and
installed there by apt, offline; build sandboxes never get network, so neither the recipe's
commands nor anything in an org's image can reach the mirror or the node's network. The node
keeps a .deb cache for both paths (node/images/). The sandbox's disk is captured as the
version's layer. An abort (`POST /v1/images/abort`) cancels the running step within a second
(its stream to the node closes and the node kills debootstrap, apt or the command); the build
sandbox and its disk are deleted in every outcome, and a layer is recorded only on success."""

from forkyard.compute.state.images.build import build_image
from forkyard.compute.state.images.routes import router

# The router for app.py; the build job registers itself on import (tasks.load_all_tasks).
__all__ = ["build_image", "router"]
