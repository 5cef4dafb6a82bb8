"""Actors, one module per job family. Each takes row ids, re-reads rows and is idempotent."""
