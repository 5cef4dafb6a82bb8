"""Time-driven rules: working hours, tenant timezones and working-time arithmetic.

One definition of "open" serves every reader: the automation engine's
``time.inside_working_hours`` fact, the AI agents' ``outside_working_hours`` mode,
SLA due times and the public status endpoint.

- :mod:`.working_hours`: pure schedule validation and open/next-change questions (DST-aware).
- :mod:`.business_time`: adding and measuring working time (SLA due times).
- :mod:`.schedules`: the stored schedules and timezone of a tenant, and the one rule for
  which schedule applies (a division's override, else the tenant's, else always open).
"""
