"""AI agents: the agents, their assignments, handoff and orchestration rules, evaluations, usage.

Products are in :mod:`api.resources.ai_products`; knowledge and the test endpoint have
their own modules.
"""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.ai_agents import (
    ActiveBody,
    AiAgentBody,
    AiAgentListQuery,
    AssignmentBody,
    AssignmentListQuery,
    EvaluationBody,
    EvaluationCreate,
    EvaluationListQuery,
    HandoffRuleBody,
    OrchestrationListQuery,
    OrchestrationRuleBody,
    UsageQuery,
)
from api.schemas.common import Page
from shared.ai import agents, assignments, evaluations, handoff_rules, orchestration, usage_report
from shared.ai.config_views import (
    AgentUsage,
    AiAgentView,
    AssignmentView,
    EvaluationView,
    HandoffRuleView,
    OrchestrationRuleView,
    UsageSummary,
)

TAGS = ("AI Agents",)
VIEW, MANAGE = agents.VIEW, agents.MANAGE


def page_of(render, page) -> Plain:
    return Plain({"items": [render(row) for row in page.items], "next_cursor": page.next_cursor})


# ---------------------------------------------------------------- agents


class AiAgentsResource:
    @endpoint(
        "List all AI agents",
        permission=VIEW,
        query=AiAgentListQuery,
        response=Page[AiAgentView],
        description="Newest first; `is_active` and `q` (name contains) filter.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: AiAgentListQuery):
        page = agents.list_agents(req.context.db, ctx, **query.model_dump())
        return page_of(agents.agent_view, page)

    @endpoint(
        "Create a new AI agent",
        permission=MANAGE,
        body=AiAgentBody,
        response=AiAgentView,
        status=201,
        errors=(409,),
        description=(
            "`api_key` is write-only: stored encrypted, answered as `has_api_key`."
            " `base_url` (an OpenAI-compatible API root) must pass the SSRF guard unless"
            " AI_ALLOW_PRIVATE_BASE_URL allows local model servers (the default outside"
            " production). A name used by another AI agent: 409. A workspace has at most"
            " 100 AI agents: one more is 422 `agent_limit`."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: AiAgentBody):
        agent = agents.create_agent(
            req.context.db, ctx, body.model_dump(exclude={"api_key"}), api_key=body.api_key
        )
        return Plain(agents.agent_view(agent))


class AiAgentResource:
    @endpoint("Get an AI agent by ID", permission=VIEW, response=AiAgentView, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return Plain(agents.agent_view(agents.get_agent(req.context.db, ctx, id)))

    @endpoint(
        "Update an AI agent",
        permission=MANAGE,
        body=AiAgentBody,
        response=AiAgentView,
        errors=(409,),
        description=(
            "Full replace: fields left out take their defaults, except `api_key`:"
            " left out keeps the stored key, `null` removes it, a string replaces it."
        ),
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, id, body: AiAgentBody):
        key = body.api_key if "api_key" in body.model_fields_set else agents.KEEP
        agent = agents.replace_agent(
            req.context.db, ctx, id, body.model_dump(exclude={"api_key"}), api_key=key
        )
        return Plain(agents.agent_view(agent))

    @endpoint(
        "Delete an AI agent",
        permission=MANAGE,
        status=204,
        description=(
            "Its assignments, rules, knowledge sources, QnA pairs, products, evaluations and"
            " usage go with it; conversations it owned are left without an AI agent."
        ),
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        agents.delete_agent(req.context.db, ctx, id)


class AiAgentActiveResource:
    @endpoint(
        "Toggle AI agent active state",
        permission=MANAGE,
        body=ActiveBody,
        response=AiAgentView,
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, id, body: ActiveBody):
        agent = agents.set_active(req.context.db, ctx, id, body.is_active)
        return Plain(agents.agent_view(agent))


# ---------------------------------------------------------------- assignments


class AssignmentsResource:
    @endpoint(
        "List AI agent assignments",
        permission=VIEW,
        query=AssignmentListQuery,
        response=Page[AssignmentView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: AssignmentListQuery):
        page = assignments.list_assignments(req.context.db, ctx, **query.model_dump())
        return page_of(assignments.view, page)

    @endpoint(
        "Create an AI agent assignment",
        permission=MANAGE,
        body=AssignmentBody,
        response=AssignmentView,
        status=201,
        errors=(409,),
        description=(
            "Names an integration account, a channel, or both (the account's own channel)."
            " Ids of another workspace: 422. The same account, channel and division twice: 409."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: AssignmentBody):
        return Plain(
            assignments.view(assignments.create_assignment(req.context.db, ctx, body.model_dump()))
        )


class AssignmentResource:
    @endpoint(
        "Update an AI agent assignment",
        permission=MANAGE,
        body=AssignmentBody,
        response=AssignmentView,
        errors=(409,),
        description="Full replace.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, id, body: AssignmentBody):
        row = assignments.replace_assignment(req.context.db, ctx, id, body.model_dump())
        return Plain(assignments.view(row))

    @endpoint("Delete an AI agent assignment", permission=MANAGE, status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id):
        assignments.delete_assignment(req.context.db, ctx, id)


# ---------------------------------------------------------------- handoff rules


class HandoffRulesResource:
    @endpoint(
        "List handoff rules for an AI agent",
        permission=VIEW,
        response=list[HandoffRuleView],
        description="In the order they are tried: `position`, then age. Not paginated.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id):
        rules = handoff_rules.list_rules(req.context.db, ctx, id)
        return Plain([handoff_rules.view(rule) for rule in rules])

    @endpoint(
        "Create a handoff rule",
        permission=MANAGE,
        body=HandoffRuleBody,
        response=HandoffRuleView,
        status=201,
        description=(
            "`keyword` rules need `keywords`; `max_turns` rules need `max_turns`;"
            " `low_confidence` rules may set `threshold` (else the agent's);"
            " `explicit_request` rules may add `keywords`. A field another kind uses: 422."
            " An AI agent has at most 100 rules: one more is 422 `rule_limit`."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: HandoffRuleBody):
        rule = handoff_rules.create_rule(req.context.db, ctx, id, body.model_dump())
        return Plain(handoff_rules.view(rule))


class HandoffRuleResource:
    @endpoint(
        "Update a handoff rule",
        permission=MANAGE,
        body=HandoffRuleBody,
        response=HandoffRuleView,
        description="Full replace. A rule of another AI agent: 404.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, id, rule_id, body: HandoffRuleBody):
        rule = handoff_rules.replace_rule(req.context.db, ctx, id, rule_id, body.model_dump())
        return Plain(handoff_rules.view(rule))

    @endpoint("Delete a handoff rule", permission=MANAGE, status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id, rule_id):
        handoff_rules.delete_rule(req.context.db, ctx, id, rule_id)


# ---------------------------------------------------------------- orchestration rules


class OrchestrationRulesResource:
    @endpoint(
        "List orchestration rules",
        permission=VIEW,
        query=OrchestrationListQuery,
        response=Page[OrchestrationRuleView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: OrchestrationListQuery):
        page = orchestration.list_rules(req.context.db, ctx, **query.model_dump())
        return page_of(orchestration.view, page)

    @endpoint(
        "Create an orchestration rule",
        permission=MANAGE,
        body=OrchestrationRuleBody,
        response=OrchestrationRuleView,
        status=201,
        description=(
            "`intent` rules need `intent` and its example phrases in `keywords`; `channel`"
            " rules a `channel`; `keyword` rules `keywords`. Lower `priority` is tried first."
            " A workspace has at most 500 rules: one more is 422 `rule_limit`."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: OrchestrationRuleBody):
        rule = orchestration.create_rule(req.context.db, ctx, body.model_dump())
        return Plain(orchestration.view(rule))


class OrchestrationRuleResource:
    @endpoint(
        "Update an orchestration rule",
        permission=MANAGE,
        body=OrchestrationRuleBody,
        response=OrchestrationRuleView,
        description="Full replace.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, id, body: OrchestrationRuleBody):
        rule = orchestration.replace_rule(req.context.db, ctx, id, body.model_dump())
        return Plain(orchestration.view(rule))

    @endpoint("Delete an orchestration rule", permission=MANAGE, status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id):
        orchestration.delete_rule(req.context.db, ctx, id)


# ---------------------------------------------------------------- evaluations


class EvaluationsResource:
    @endpoint(
        "List evaluations for an AI agent",
        permission=VIEW,
        query=EvaluationListQuery,
        response=Page[EvaluationView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: EvaluationListQuery):
        page = evaluations.list_evaluations(req.context.db, ctx, id, **query.model_dump())
        return page_of(evaluations.view, page)

    @endpoint(
        "Create an AI response evaluation",
        permission=VIEW,
        body=EvaluationCreate,
        response=EvaluationView,
        status=201,
        errors=(409,),
        description=(
            "`message_id` must be a reply this AI agent wrote (422 otherwise); `score` 1-5."
            " A reviewer rates a reply once: a second rating is 409."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: EvaluationCreate):
        row = evaluations.create_evaluation(req.context.db, ctx, id, **body.model_dump())
        return Plain(evaluations.view(row))


class EvaluationResource:
    @endpoint(
        "Update an AI evaluation",
        permission=VIEW,
        body=EvaluationBody,
        response=EvaluationView,
        description="Replaces `score` and `correction`.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, id, evaluation_id, body: EvaluationBody):
        row = evaluations.replace_evaluation(
            req.context.db, ctx, id, evaluation_id, **body.model_dump()
        )
        return Plain(evaluations.view(row))

    @endpoint("Delete an AI evaluation", permission=VIEW, status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id, evaluation_id):
        evaluations.delete_evaluation(req.context.db, ctx, id, evaluation_id)


# ---------------------------------------------------------------- usage

_RANGE = (
    " `from` and `to` are dates, `YYYY-MM-DD` (UTC days, inclusive); left out, the last"
    " 30 days. Another form, `from` after `to`, or more than 366 days: 422."
)


class AgentUsageResource:
    @endpoint(
        "Get daily usage stats for an AI agent",
        permission=VIEW,
        query=UsageQuery,
        response=AgentUsage,
        description="One entry per day of the range (days without work are zeros)." + _RANGE,
        tags=TAGS,
        errors=(422,),
    )
    def on_get(self, req, resp, *, ctx, id, query: UsageQuery):
        return Plain(
            AgentUsage.data(
                usage_report.agent_usage(req.context.db, ctx, id, start=query.from_, end=query.to)
            )
        )


class UsageSummaryResource:
    @endpoint(
        "Get aggregated AI usage summary",
        permission=VIEW,
        query=UsageQuery,
        response=UsageSummary,
        description=(
            "The workspace's totals and each AI agent's, in one list (a workspace has at"
            " most 100 AI agents)." + _RANGE
        ),
        tags=TAGS,
        errors=(422,),
    )
    def on_get(self, req, resp, *, ctx, query: UsageQuery):
        summary = usage_report.usage_summary(req.context.db, ctx, start=query.from_, end=query.to)
        return Plain(UsageSummary.data(summary))


ROUTES = [
    ("/api/ai-agents", AiAgentsResource()),
    ("/api/ai-agents/usage", UsageSummaryResource()),
    ("/api/ai-agents/{id:uuid}", AiAgentResource()),
    ("/api/ai-agents/{id:uuid}/active", AiAgentActiveResource()),
    ("/api/ai-agents/{id:uuid}/handoff-rules", HandoffRulesResource()),
    ("/api/ai-agents/{id:uuid}/handoff-rules/{rule_id:uuid}", HandoffRuleResource()),
    ("/api/ai-agents/{id:uuid}/evaluations", EvaluationsResource()),
    ("/api/ai-agents/{id:uuid}/evaluations/{evaluation_id:uuid}", EvaluationResource()),
    ("/api/ai-agents/{id:uuid}/usage", AgentUsageResource()),
    ("/api/ai-agent-assignments", AssignmentsResource()),
    ("/api/ai-agent-assignments/{id:uuid}", AssignmentResource()),
    ("/api/ai-orchestration-rules", OrchestrationRulesResource()),
    ("/api/ai-orchestration-rules/{id:uuid}", OrchestrationRuleResource()),
]
