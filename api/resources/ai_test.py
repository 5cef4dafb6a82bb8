"""POST /api/ai-agents/{id}/test: the agent answers a typed message synchronously."""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.ai_test import AiTestRequest, AiTestResult
from shared.ai import trial


class AiAgentTestResource:
    @endpoint(
        "Send a test message to an AI agent",
        permission="ai_agents.manage",
        body=AiTestRequest,
        response=AiTestResult,
        description="Runs the reply path on `message` (handoff rules, retrieval, the model)"
        " and answers the reply, its sources, the handoff decision and the tokens. Nothing"
        " is sent to any channel; the call counts toward usage (`test_replies`). The request"
        " waits for the model, so each server process runs a few tests at once"
        " (`AI_MAX_CONCURRENT_TESTS`) and answers 429 with `Retry-After` beyond them. A test"
        " uses none of the plan's monthly AI replies, but once they are spent it answers 402"
        " `plan_limit_reached`.",
        tags=("AI Agents",),
        errors=(402, 429),
    )
    def on_post(self, req, resp, *, ctx, id, body: AiTestRequest):
        history = [(turn.sender == "contact", turn.text) for turn in body.history]
        return trial.try_agent(req.context.db, ctx, id, body.message, history)


ROUTES = [("/api/ai-agents/{id:uuid}/test", AiAgentTestResource())]
