"""The subscribers that make notices from other domains' facts (forkyard.events)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from forkyard.compute.events import InstanceError, InstanceStopped, QuotaNearlyReached
from forkyard.compute.models import Instance
from forkyard.events import Event, subscriber
from forkyard.identity.events import (
    UserBackupCodesRegenerated,
    UserMfaFactorAdded,
    UserMfaFactorRemoved,
    UserPasswordChanged,
    UserSignedIn,
)
from forkyard.identity.models import AuthSession, User
from forkyard.jobs.queue import JobContext
from forkyard.kit.clock import utcnow
from forkyard.notifications.models import Notification
from forkyard.notifications.service import notify, org_admins
from forkyard.orgs.events import InvitationCreated
from forkyard.tenants.models import Org
from forkyard.webhooks.events import WebhookDisabled


async def _instance_people(ctx: JobContext, org_id: str | None, instance_id: str) -> list[str]:
    """Who an instance concerns: whoever made it, and its org's owners and admins."""
    if org_id is None:
        return []
    people = await org_admins(ctx.session, org_id)
    instance = await ctx.session.get(Instance, instance_id)
    if instance is not None and instance.created_by and instance.created_by.startswith("usr_"):
        people.insert(0, instance.created_by)
    return people


@subscriber(InstanceError, name="notifications.instance_error")
async def instance_error(ctx: JobContext, event: InstanceError) -> None:
    await notify(
        ctx.session,
        await _instance_people(ctx, event.org_id, event.resource_id),
        category="instances",
        event_id=event.record.id,
        kind=event.type,
        org_id=event.org_id,
        title=f"Instance {event.resource_id} failed",
        body=f"Instance {event.resource_id} is in error: {event.status_reason or 'unknown'}.",
        data={"instance_id": event.resource_id, "reason": event.status_reason},
    )


@subscriber(InstanceStopped, name="notifications.instance_idle")
async def instance_idle(ctx: JobContext, event: InstanceStopped) -> None:
    if event.status_reason != "idle_timeout":
        return  # stopped by someone: they know
    await notify(
        ctx.session,
        await _instance_people(ctx, event.org_id, event.resource_id),
        category="instances",
        event_id=event.record.id,
        kind=event.type,
        org_id=event.org_id,
        title=f"Instance {event.resource_id} was stopped for idleness",
        body=f"Instance {event.resource_id} was idle and has been stopped; start it again"
        " when you need it.",
        data={"instance_id": event.resource_id},
    )


@subscriber(UserSignedIn, name="notifications.new_device")
async def new_device(ctx: JobContext, event: UserSignedIn) -> None:
    """A sign-in from a browser or program this user has not signed in from before (the user
    agent of every earlier session); the very first sign-in is not news."""
    signed_in = await ctx.session.get(AuthSession, event.session_id)
    if signed_in is None:
        return
    earlier = select(func.count()).where(
        AuthSession.user_id == event.resource_id, AuthSession.created_at < signed_in.created_at
    )
    if not (await ctx.session.execute(earlier)).scalar_one():
        return
    same_device = (
        await ctx.session.execute(
            earlier.where(AuthSession.user_agent.is_not_distinct_from(signed_in.user_agent))
        )
    ).scalar_one()
    if same_device:
        return
    await notify(
        ctx.session,
        [event.resource_id],
        category="security",
        event_id=event.record.id,
        kind="security.new_device",
        org_id=None,
        title="A sign-in from a new device",
        body=f"Your account was signed in to from {signed_in.user_agent or 'an unknown client'}"
        f" at {signed_in.ip or 'an unknown address'} ({event.method}). If this was not you,"
        " change your password and sign out your other sessions.",
        data={"session_id": signed_in.id, "ip": signed_in.ip, "method": event.method},
    )


@subscriber(InvitationCreated, name="notifications.invited")
async def invited(ctx: JobContext, event: InvitationCreated) -> None:
    """The invitee, when they already have an account (the emailed link is sent either way)."""
    user_id = (
        await ctx.session.execute(
            select(User.id).where(
                func.lower(User.email) == event.email.lower(), User.deleted_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if user_id is None or event.org_id is None:
        return
    org = await ctx.session.get(Org, event.org_id)
    name = org.name if org is not None else event.org_id
    await notify(
        ctx.session,
        [user_id],
        category="org",
        event_id=event.record.id,
        kind=event.type,
        org_id=None,  # not the invitee's org (yet)
        title=f"You are invited to {name}",
        body=f"You are invited to join {name} as {event.role}; the link is in your email.",
        data={"invitation_id": event.resource_id, "org_name": name, "role": event.role},
    )


@subscriber(WebhookDisabled, name="notifications.webhook_disabled")
async def webhook_disabled(ctx: JobContext, event: WebhookDisabled) -> None:
    if event.org_id is None:
        return
    await notify(
        ctx.session,
        await org_admins(ctx.session, event.org_id),
        category="webhooks",
        event_id=event.record.id,
        kind=event.type,
        org_id=event.org_id,
        title=f"Webhook {event.resource_id} was disabled",
        body=f"Every delivery to {event.url} has failed since {event.failing_since:%Y-%m-%d %H:%M}"
        " UTC, so the endpoint was disabled and its pending deliveries moved to the dead-letter"
        ' queue. Fix it, then enable it again (PATCH /v1/webhooks/{id} {"enabled": true}).',
        data={"webhook_id": event.resource_id, "url": event.url},
    )


# --- changes to how an account signs in: security, so always in the app and by email ---

IF_NOT_YOU = (
    " If this was not you, reset your password now (POST /v1/auth/forgot-password) and sign out"
    " your other sessions."
)
FACTOR_NAMES = {
    "totp": "an authenticator app",
    "sms": "text message codes",
    "email": "email codes",
    "webauthn": "a passkey",
}


async def _security_notice(
    ctx: JobContext, event: Event, title: str, body: str, data: dict[str, Any]
) -> None:
    """To the account's own user only (org_id None: not shown as any org's)."""
    await notify(
        ctx.session,
        [event.resource_id],
        category="security",
        event_id=event.record.id,
        kind=event.type,
        org_id=None,
        title=title,
        body=body,
        data=data,
    )


@subscriber(UserPasswordChanged, name="notifications.password_changed")
async def password_changed(ctx: JobContext, event: UserPasswordChanged) -> None:
    title, body = {
        "set": ("A password was set", "A password was set on your account."),
        "changed": (
            "Your password was changed",
            "Your password was changed and your other sessions were signed out.",
        ),
        "reset": (
            "Your password was reset",
            "Your password was reset with an emailed link and every session was signed out.",
        ),
    }[event.how]
    await _security_notice(ctx, event, title, body + IF_NOT_YOU, {"how": event.how})


@subscriber(UserMfaFactorAdded, name="notifications.mfa_factor_added")
async def mfa_factor_added(ctx: JobContext, event: UserMfaFactorAdded) -> None:
    what = FACTOR_NAMES.get(event.kind, event.kind)
    await _security_notice(
        ctx,
        event,
        "A second factor was added",
        f"A second factor ({what}) was added to your account." + IF_NOT_YOU,
        {"factor_id": event.factor_id, "kind": event.kind},
    )


@subscriber(UserMfaFactorRemoved, name="notifications.mfa_factor_removed")
async def mfa_factor_removed(ctx: JobContext, event: UserMfaFactorRemoved) -> None:
    if event.reason == "recovery":
        title = "Your account was recovered"
        body = (
            "An account recovery removed every second factor of your account and signed out"
            " every session. Sign in again and set up a new factor."
        )
    else:
        title = "A second factor was removed"
        what = FACTOR_NAMES.get(event.kind or "", event.kind)
        body = f"A second factor ({what}) was removed from your account."
    await _security_notice(
        ctx,
        event,
        title,
        body + IF_NOT_YOU,
        {"factor_id": event.factor_id, "kind": event.kind, "reason": event.reason},
    )


@subscriber(UserBackupCodesRegenerated, name="notifications.backup_codes_regenerated")
async def backup_codes_regenerated(ctx: JobContext, event: UserBackupCodesRegenerated) -> None:
    await _security_notice(
        ctx,
        event,
        "Your backup codes were replaced",
        "New backup codes were made for your account; the old ones no longer work." + IF_NOT_YOU,
        {},
    )


# --- limits ---

QUOTA_NAMES = {
    "max_instances": "instances",
    "max_vcpus": "vCPUs",
    "max_memory_mb": "memory (MB)",
    "max_disk_mb": "disk (MB)",
}
QUOTA_NOTICE_EVERY = timedelta(days=1)


@subscriber(QuotaNearlyReached, name="notifications.quota_nearly_reached")
async def quota_nearly_reached(ctx: JobContext, event: QuotaNearlyReached) -> None:
    """The org's owners and admins, at most once a day per limit: usage going up and down
    around the mark, or captures while over it, make an event each but not a notice each."""
    if event.org_id is None:
        return
    # Two of these running at once for one org and limit would both find no recent notice.
    await ctx.session.execute(
        select(func.pg_advisory_xact_lock(func.hashtext(f"quota:{event.org_id}:{event.limit}")))
    )
    recent = await ctx.session.execute(
        select(Notification.id)
        .where(
            Notification.org_id == event.org_id,
            Notification.kind == event.type,
            Notification.data["limit"].astext == event.limit,
            Notification.event_id != event.record.id,  # a rerun of this event is notify()'s
            Notification.created_at > utcnow() - QUOTA_NOTICE_EVERY,
        )
        .limit(1)
    )
    if recent.first() is not None:
        return
    what = QUOTA_NAMES.get(event.limit, event.limit)
    org = await ctx.session.get(Org, event.org_id)
    name = org.name if org is not None else event.org_id
    await notify(
        ctx.session,
        await org_admins(ctx.session, event.org_id),
        category="limits",
        event_id=event.record.id,
        kind=event.type,
        org_id=event.org_id,
        title=f"{name} is near its {what} limit",
        body=f"{name} uses {event.in_use:g} of its {event.max:g} {what}"
        f" ({event.threshold_pct}% or more). At the limit, new instances, captures and builds"
        " are refused; delete what is not needed or ask for a higher limit.",
        data={"limit": event.limit, "max": event.max, "in_use": event.in_use},
    )
