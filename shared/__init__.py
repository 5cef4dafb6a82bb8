"""Domain code shared by the API, the workers and the scheduler.

Nothing in here imports ``api``, ``workers`` or ``scheduler``: the processes wire
themselves to the domain (for example by handing :mod:`shared.events` the function
that publishes outbox events), never the other way round.
"""
