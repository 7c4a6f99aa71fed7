"""Images on the node: the default rootfs (`default`), and the two recipe steps of an image build
(`recipes`).

The default instance image is a Debian minbase rootfs built once with debootstrap and kept as a
read-only lower layer (`ensure_default_image`).

Image builds (the control plane's `image.build` job, compute/state/images/) run in a build
sandbox `build-...` whose disk is captured as the new image's layer. Two steps need the Debian
mirror, and both run *host* tools on the node, never code from the image or the recipe with
network access: the build sandbox keeps its own empty network namespace like every instance.
- `bootstrap_build_disk` (a suite recipe): debootstrap (minbase, the suite, the packages plus
  python3 for the guest agent) straight into the upper directory of the build sandbox's new
  disk. The sandbox then boots on the empty `scratch` image, so the captured layer is the whole
  rootfs and instances stack it on `scratch` (portable to other nodes like any layer).
- `fetch_packages` (packages on an existing image): the host's apt resolves the packages against
  the image's own dpkg status (read through the guest agent) and downloads them; the .debs are
  written into the sandbox (through the agent too), where apt installs them offline.
Both share one .deb cache, <image cache>/debs (debootstrap's --cache-dir and apt's archive dir
name files alike), so a second build downloads only what changed. A step runs as a task holding
the sandbox's lock: closing its event stream (an abort) kills the host tool, and the sandbox is
torn down only after the task is gone.
"""

from __future__ import annotations

from forkyard.node.images.default import (
    DEFAULT_PACKAGES,
    DEFAULT_SUITE,
    FALLBACK_MIRROR,
    ImageBuildError,
    apt_mirror,
    debootstrap_argv,
    default_image_dir,
    default_image_marker,
    ensure_default_image,
)
from forkyard.node.images.recipes import (
    AGENT_PACKAGES,
    DEB_INBOX,
    KEYRING,
    LISTS_MAX_AGE_S,
    PACKAGE_RE,
    SCRATCH_IMAGE,
    STATUS_MAX_BYTES,
    SUITE_RE,
    TICK_S,
    BuildSandboxExists,
    BuildStepFailed,
    bootstrap_build_disk,
    cancel_step,
    check_packages,
    check_suite,
    deb_cache,
    ensure_scratch_image,
    event_stream,
    fetch_packages,
    image_cache_root,
)

__all__ = [
    "AGENT_PACKAGES",
    "DEB_INBOX",
    "DEFAULT_PACKAGES",
    "DEFAULT_SUITE",
    "FALLBACK_MIRROR",
    "KEYRING",
    "LISTS_MAX_AGE_S",
    "PACKAGE_RE",
    "SCRATCH_IMAGE",
    "STATUS_MAX_BYTES",
    "SUITE_RE",
    "TICK_S",
    "BuildSandboxExists",
    "BuildStepFailed",
    "ImageBuildError",
    "apt_mirror",
    "bootstrap_build_disk",
    "cancel_step",
    "check_packages",
    "check_suite",
    "deb_cache",
    "debootstrap_argv",
    "default_image_dir",
    "default_image_marker",
    "ensure_default_image",
    "ensure_scratch_image",
    "event_stream",
    "fetch_packages",
    "image_cache_root",
]
