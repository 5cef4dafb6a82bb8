"""The scheduler process: ``python -m scheduler`` runs thin periodic jobs while it leads.

:mod:`scheduler.leader` elects one leader with a Postgres advisory lock;
:mod:`scheduler.jobs` is the table of jobs it runs. Jobs select due rows and
enqueue actors; heavy work never runs here.
"""
