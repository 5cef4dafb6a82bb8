"""Dramatiq workers: the broker, its middleware and the actors, one module per job family."""
