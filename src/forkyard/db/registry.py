"""Imports every domain's tables so Base.metadata is complete (migrations, tests)."""

from forkyard.audit import models as audit_models  # noqa: F401
from forkyard.compute import models as compute_models  # noqa: F401
from forkyard.db.base import Base
from forkyard.events import models as event_models  # noqa: F401
from forkyard.forwards import models as forward_models  # noqa: F401
from forkyard.identity import models as identity_models  # noqa: F401
from forkyard.jobs import models as job_models  # noqa: F401
from forkyard.notifications import models as notification_models  # noqa: F401
from forkyard.orgs import models as org_models  # noqa: F401
from forkyard.tenants import models as tenant_models  # noqa: F401
from forkyard.webhooks import models as webhook_models  # noqa: F401

metadata = Base.metadata
