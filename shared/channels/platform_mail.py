"""The platform's own emails (agent invitations), through the SMTP transport of the channels.

The relay and the sender come from settings (``PLATFORM_SMTP_HOST``, ``PLATFORM_SMTP_PORT``,
``PLATFORM_SMTP_SECURITY``, ``PLATFORM_SMTP_USERNAME``, ``PLATFORM_SMTP_PASSWORD``,
``PLATFORM_EMAIL_FROM``, ``PLATFORM_EMAIL_FROM_NAME``), not from a tenant's email account:
these emails come from the platform, whatever channels a tenant connected. Failures are
:class:`~shared.channels.send_errors.SendFailed` as for any send (SMTP 4xx and network
trouble transient, 5xx permanent); an unconfigured relay is a permanent ``not_configured``.
"""

from __future__ import annotations

from shared.channels import smtp
from shared.channels.send_errors import SendFailed
from shared.config import get_settings


def sender() -> smtp.SmtpAccount:
    """The platform relay and sender address, or a permanent failure saying what is missing."""
    settings = get_settings()
    if not settings.platform_smtp_host or not settings.platform_email_from:
        raise SendFailed(
            "not_configured",
            "platform email is not configured: set PLATFORM_SMTP_HOST and PLATFORM_EMAIL_FROM",
            transient=False,
        )
    return smtp.SmtpAccount(
        host=settings.platform_smtp_host,
        port=settings.platform_smtp_port,
        security=settings.platform_smtp_security,
        username=settings.platform_smtp_username,
        password=settings.platform_smtp_password,
        from_address=settings.platform_email_from,
        from_name=settings.platform_email_from_name,
    )


def send(*, to: str, subject: str, text: str, html: str | None = None) -> str:
    """Send one email from the platform; its ``Message-ID``."""
    settings = get_settings()
    account = sender()
    message = smtp.build_email(account, to=to, subject=subject, text=text, html=html)
    return smtp.send_email(
        account, message, timeout=settings.smtp_timeout_seconds, ca_file=settings.smtp_ca_file
    )
