"""Channels: integrations and accounts, inbound webhooks and their processing, delivery statuses."""
