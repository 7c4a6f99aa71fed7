"""Tenancy: every read of a row an org owns goes through `owned` (a statement) or `get_owned`
(one row by id), which add the org filter, so a route never writes `Model.org_id == ...` by hand
and another org's row is a 404, never a 403 that would confirm it exists."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, false
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.db.base import IdMixin
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix

S = TypeVar("S", bound=Select[*tuple[Any, ...]])
M = TypeVar("M", bound=IdMixin)


class Tenant(Protocol):
    """Whoever asks: a Principal, or anything else that names the org it acts for."""

    @property
    def org_id(self) -> str | None: ...


def org_of(tenant: Tenant | str | None) -> str | None:
    return tenant if isinstance(tenant, str) or tenant is None else tenant.org_id


def owned(stmt: S, tenant: Tenant | str | None, model: Any = None) -> S:
    """`stmt` narrowed to the rows of the tenant's org: `owned(select(Webhook), principal)`.
    The table is the statement's first entity unless `model` names another (a join). A caller
    with no org (staff without one, a node) owns nothing."""
    table = model if model is not None else stmt.column_descriptions[0]["entity"]
    org_id = org_of(tenant)
    if org_id is None:
        return stmt.where(false())
    return stmt.where(table.org_id == org_id)


def is_owned(row: Any, tenant: Tenant | str | None) -> bool:
    """Whether a row already in hand belongs to the tenant's org (a row with no org never does)."""
    org_id = org_of(tenant)
    return org_id is not None and getattr(row, "org_id", None) == org_id


async def get_owned(
    session: AsyncSession,
    model: type[M],
    id: str,
    tenant: Tenant | str | None,
    *,
    kind: str,
    lock: bool = False,
) -> M:
    """The row `id` of `model` if the tenant's org owns it, else 404 `not_found` for `kind`
    (a malformed id, a missing row and another org's row answer alike). `lock` takes the row
    lock (SELECT ... FOR UPDATE) for a change that must not race."""
    row = None
    if has_prefix(id, model.id_prefix):
        row = await session.get(model, id, with_for_update=lock or None)
    if row is None or not is_owned(row, tenant):
        raise NotFound.of(kind, id)
    return row
