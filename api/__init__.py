"""The HTTP API: a thin Falcon layer that validates, calls shared/ services and serializes."""
