"""Platform administration: super admins, tenant lifecycle, impersonation, health, usage.

Super admins live outside every tenant (``super_admins``), log in on their own route
and hold tokens with ``sa: true`` and no ``tid``: accepted only under ``/api/admin``.
Every one of their calls lands in ``platform_audit_logs`` (:mod:`.audit`).
"""
