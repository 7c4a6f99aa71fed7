"""What a new instance is made of (provision's blueprint), without a database or a sandbox:
create and restore resolve the request, then the profile, then the defaults, the same way."""

from __future__ import annotations

from forkyard.compute.models import Profile
from forkyard.compute.provision import (
    DEFAULT_DISK_MB,
    DEFAULT_MEMORY_MB,
    DEFAULT_VCPUS,
    blueprint,
)
from forkyard.compute.schemas import InstanceCreate, Network
from forkyard.config import Settings

SETTINGS = Settings(secret_key="test-secret-key-0123456789abcdef")


def a_profile() -> Profile:
    return Profile(
        id="prof_small",
        org_id="org_x",
        name="small",
        image="python",
        vcpus=0.5,
        memory_mb=256,
        disk_mb=2048,
        env={"FROM": "profile", "KEEP": "1"},
        idle_timeout_s=600,
        setup_commands=["pip install x"],
        network={"egress": "none", "allow": []},
    )


def test_restore_keeps_the_profiles_idle_timeout_vcpus_and_memory():
    plan = blueprint(
        InstanceCreate(profile_id="prof_small"),
        a_profile(),
        SETTINGS,
        disk_mb=3000,
        image="img_snap",
        from_disk=True,
    )
    assert (plan.vcpus, plan.memory_mb, plan.idle_timeout_s) == (0.5, 256, 600)
    # the disk and image are the snapshot's; its disk is set up already
    assert (plan.disk_mb, plan.image) == (3000, "img_snap")
    assert (plan.setup_commands, plan.setup_done) == ([], True)
    assert plan.network == {"egress": "none", "allow": []}
    assert plan.profile_id == "prof_small"


def test_create_takes_the_profile_where_the_request_is_silent():
    plan = blueprint(
        InstanceCreate(profile_id="prof_small", memory_mb=1024, env={"FROM": "request"}),
        a_profile(),
        SETTINGS,
    )
    assert (plan.vcpus, plan.memory_mb, plan.disk_mb) == (0.5, 1024, 2048)
    assert plan.env == {"FROM": "request", "KEEP": "1"}
    assert (plan.image, plan.idle_timeout_s) == ("python", 600)
    assert (plan.setup_commands, plan.setup_done) == (["pip install x"], False)


def test_the_request_wins_over_the_profile_for_restore_too():
    plan = blueprint(
        InstanceCreate(vcpus=2, memory_mb=2048, idle_timeout_s=60, network=Network(egress="open")),
        a_profile(),
        SETTINGS,
        disk_mb=3000,
        image="img_snap",
        from_disk=True,
    )
    assert (plan.vcpus, plan.memory_mb, plan.idle_timeout_s) == (2, 2048, 60)
    assert plan.network["egress"] == "open"


def test_without_a_profile_the_platform_defaults():
    plan = blueprint(InstanceCreate(), None, SETTINGS)
    assert (plan.vcpus, plan.memory_mb, plan.disk_mb) == (
        DEFAULT_VCPUS,
        DEFAULT_MEMORY_MB,
        DEFAULT_DISK_MB,
    )
    assert (plan.image, plan.idle_timeout_s, plan.profile_id) == ("default", None, None)
    assert plan.network["egress"] == SETTINGS.default_egress
    restored = blueprint(InstanceCreate(), None, SETTINGS, disk_mb=700, image="x", from_disk=True)
    assert (restored.vcpus, restored.memory_mb, restored.disk_mb) == (
        DEFAULT_VCPUS,
        DEFAULT_MEMORY_MB,
        700,
    )
