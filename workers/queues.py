"""Queue names, one per job family, so operators can isolate a noisy family with ``-Q``."""

EVENTS = "events"
WEBHOOKS = "webhooks"
AUTOMATION = "automation"
AI = "ai"
CHANNELS = "channels"
#: Sends to providers, apart from inbound processing so a slow provider cannot delay intake.
OUTBOUND = "outbound"
ANALYTICS = "analytics"
MAINTENANCE = "maintenance"

ALL = (EVENTS, WEBHOOKS, AUTOMATION, AI, CHANNELS, OUTBOUND, ANALYTICS, MAINTENANCE)
