"""Log each job's records with the tenant its message names.

Records logged while an actor runs (its own, Retries', the worker's "Failed to
process message" with its traceback) carry the message's ``tenant_id`` option
as their tenant (:data:`shared.logs.tenant_id_var`); a message without one logs
as platform-wide. Put it first in the middleware list: after-hooks run in
reverse order, so the tenant is reset only once every other middleware is done.
"""

from __future__ import annotations

import dramatiq

from shared.logs import tenant_id_var
from shared.worker_metrics import tenant_id_from_options

#: The attribute holding the context token to reset, on the message being processed.
_RESET_ATTR = "_omnistream_log_tenant"


class LogContext(dramatiq.Middleware):
    """Set the logging tenant for one message's processing, then put the previous one back."""

    def before_process_message(self, broker, message):
        setattr(message, _RESET_ATTR, tenant_id_var.set(tenant_id_from_options(message.options)))

    def after_process_message(self, broker, message, *, result=None, exception=None):
        token = getattr(message, _RESET_ATTR, None)
        if token is not None:
            tenant_id_var.reset(token)
            setattr(message, _RESET_ATTR, None)

    def after_skip_message(self, broker, message):
        self.after_process_message(broker, message)
