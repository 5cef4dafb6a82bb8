"""Typed SQLAlchemy 2 models, one module per domain; importing this package registers them all."""

from shared.models.activity import ActivityLog
from shared.models.admin import PlatformAuditLog, SuperAdmin
from shared.models.ai import (
    AiAgent,
    AiAgentAssignment,
    AiEvaluation,
    AiHandoffRule,
    AiOrchestrationRule,
    AiProduct,
    AiProductImport,
    AiReply,
    AiUsageDaily,
    KnowledgeChunk,
    KnowledgeSource,
    KnowledgeTerm,
    QnaPair,
)
from shared.models.analytics import (
    AnalyticsConversationCount,
    AnalyticsConversationFact,
    AnalyticsCsatDaily,
    AnalyticsDaily,
    AnalyticsEvent,
    AnalyticsHourly,
    AnalyticsReconcileRun,
)
from shared.models.automation import (
    AutomationEvent,
    AutomationRule,
    AutomationRun,
    AutomationSettings,
    ConversationMute,
    WorkingHours,
)
from shared.models.automation_stats import AutomationAlert, AutomationStats, AutomationStatsPending
from shared.models.base import Base
from shared.models.campaigns import Campaign, CampaignRecipient
from shared.models.channels import InboundEvent, Integration, IntegrationAccount, MediaFile
from shared.models.csat import CsatSettings, CsatSurvey
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
from shared.models.invitations import AgentInvitation
from shared.models.operations import DeadLetter, SchedulerHeartbeat
from shared.models.outbound import OutboundSend
from shared.models.outbox import OutboxEvent
from shared.models.receipts import EarlyStatus, ReadReceipt
from shared.models.tenancy import Tenant
from shared.models.timed import ConversationSla, ScheduledMessage, SlaBreach, SlaPolicy
from shared.models.wa_templates import WaTemplate, WaTemplateSync
from shared.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ActivityLog",
    "AgentInvitation",
    "AiAgent",
    "AiAgentAssignment",
    "AiEvaluation",
    "AiHandoffRule",
    "AiOrchestrationRule",
    "AiProduct",
    "AiProductImport",
    "AiReply",
    "AiUsageDaily",
    "AnalyticsConversationCount",
    "AnalyticsConversationFact",
    "AnalyticsCsatDaily",
    "AnalyticsDaily",
    "AnalyticsEvent",
    "AnalyticsHourly",
    "AnalyticsReconcileRun",
    "ApiKey",
    "AutomationAlert",
    "AutomationEvent",
    "AutomationRule",
    "AutomationRun",
    "AutomationSettings",
    "AutomationStats",
    "AutomationStatsPending",
    "Base",
    "Campaign",
    "CampaignRecipient",
    "ChatExpirationRule",
    "Contact",
    "Conversation",
    "ConversationMute",
    "ConversationRead",
    "ConversationSla",
    "CsatSettings",
    "CsatSurvey",
    "DeadLetter",
    "Division",
    "DivisionMember",
    "EarlyStatus",
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
    "PlatformAuditLog",
    "QnaPair",
    "QuickReply",
    "QuickReplyUsage",
    "ReadReceipt",
    "RevokedToken",
    "Role",
    "ScheduledMessage",
    "SchedulerHeartbeat",
    "SlaBreach",
    "SlaPolicy",
    "SuperAdmin",
    "Tenant",
    "Transfer",
    "User",
    "WaTemplate",
    "WaTemplateSync",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkingHours",
]
