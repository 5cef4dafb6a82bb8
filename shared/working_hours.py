"""Compatibility alias: working hours moved to :mod:`shared.timekeeping.working_hours`.

NOTE: kept so code written against the old path (branches in flight) still imports the
one definition; new code imports from ``shared.timekeeping``.
"""

from shared.timekeeping.working_hours import *  # noqa: F403
from shared.timekeeping.working_hours import (  # noqa: F401
    is_open,
    next_change,
    time_facts,
    validate_schedule,
    validate_timezone,
)
