"""Queue names, one per job family, so operators can isolate a noisy family with ``-Q``."""

EVENTS = "events"
WEBHOOKS = "webhooks"
AUTOMATION = "automation"
AI = "ai"
CHANNELS = "channels"
ANALYTICS = "analytics"
MAINTENANCE = "maintenance"

ALL = (EVENTS, WEBHOOKS, AUTOMATION, AI, CHANNELS, ANALYTICS, MAINTENANCE)
