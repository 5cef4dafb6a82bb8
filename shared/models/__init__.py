"""Typed SQLAlchemy 2 models, one module per domain; importing this package registers them all."""

from shared.models.activity import ActivityLog
from shared.models.ai import (
    AiAgent,
    AiAgentAssignment,
    AiEvaluation,
    AiHandoffRule,
    AiOrchestrationRule,
    AiProduct,
    AiReply,
    AiUsageDaily,
    KnowledgeChunk,
    KnowledgeSource,
    KnowledgeTerm,
    QnaPair,
)
from shared.models.automation import (
    AutomationEvent,
    AutomationRule,
    AutomationRun,
    AutomationSettings,
    ConversationMute,
    WorkingHours,
)
from shared.models.base import Base
from shared.models.channels import InboundEvent, Integration, IntegrationAccount, MediaFile
from shared.models.identity import ApiKey, RevokedToken, Role, User
from shared.models.inbox import (
    ChatExpirationRule,
    Contact,
    Conversation,
    ConversationRead,
    Division,
    DivisionMember,
    Job,
    Message,
    Note,
    NoteRevision,
    QuickReply,
    QuickReplyUsage,
    Transfer,
)
from shared.models.operations import DeadLetter, SchedulerHeartbeat
from shared.models.outbound import OutboundSend
from shared.models.outbox import OutboxEvent
from shared.models.tenancy import Tenant
from shared.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ActivityLog",
    "AiAgent",
    "AiAgentAssignment",
    "AiEvaluation",
    "AiHandoffRule",
    "AiOrchestrationRule",
    "AiProduct",
    "AiReply",
    "AiUsageDaily",
    "ApiKey",
    "AutomationEvent",
    "AutomationRule",
    "AutomationRun",
    "AutomationSettings",
    "Base",
    "ChatExpirationRule",
    "Contact",
    "Conversation",
    "ConversationMute",
    "ConversationRead",
    "DeadLetter",
    "Division",
    "DivisionMember",
    "InboundEvent",
    "Integration",
    "IntegrationAccount",
    "Job",
    "KnowledgeChunk",
    "KnowledgeSource",
    "KnowledgeTerm",
    "MediaFile",
    "Message",
    "Note",
    "NoteRevision",
    "OutboundSend",
    "OutboxEvent",
    "QnaPair",
    "QuickReply",
    "QuickReplyUsage",
    "RevokedToken",
    "Role",
    "SchedulerHeartbeat",
    "Tenant",
    "Transfer",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkingHours",
]
