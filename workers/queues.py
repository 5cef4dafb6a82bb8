"""Queue names, one per job family, so operators can isolate a noisy family with ``-Q``."""

EVENTS = "events"
WEBHOOKS = "webhooks"
AUTOMATION = "automation"
#: AI replies (model calls), apart from knowledge work so a big import cannot delay answers.
AI = "ai"
#: Knowledge ingestion, embeddings and product imports: slow, bulky, never urgent.
KNOWLEDGE = "knowledge"
CHANNELS = "channels"
#: Inbound provider payloads (process_inbound), apart from outbound sends.
INBOUND = "inbound"
#: Sends to providers, apart from inbound processing so a slow provider cannot delay intake.
OUTBOUND = "outbound"
#: Charges and refunds at the payment provider, apart so a slow provider delays nothing else.
BILLING = "billing"
ANALYTICS = "analytics"
MAINTENANCE = "maintenance"

ALL = (
    EVENTS,
    WEBHOOKS,
    AUTOMATION,
    AI,
    KNOWLEDGE,
    CHANNELS,
    INBOUND,
    OUTBOUND,
    BILLING,
    ANALYTICS,
    MAINTENANCE,
)
