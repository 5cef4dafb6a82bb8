"""Campaigns: one message to many contacts, in paced batches (see :mod:`.runner`)."""
