"""Public representations of resources: what GET endpoints answer and events carry.

They live in shared/ because an event's ``data`` is "the resource as its GET
endpoint returns it", and events are emitted by services, not by the API.
"""
