"""Templates: rendering edge cases and save-time validation."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.automation.templating import (
    MAX_PLACEHOLDERS,
    MAX_TEMPLATE_LENGTH,
    render,
    validate_template,
    variables_of,
)
from tests.automation_engine.support import codes

FACTS = {
    "contact.name": "Ana María",
    "contact.email": "",
    "contact.phone": None,
    "conversation.tags": ["vip", "billing"],
    "conversation.unread_count": 3.0,
    "conversation.age_minutes": 2.5,
    "conversation.ai_active": False,
    "conversation.assignee_id": uuid.UUID("6f1c1f0e-8a43-4c55-9d6b-1f6f5d0b3a11"),
    "conversation.created_at": dt.datetime(2026, 3, 8, 9, 0, tzinfo=dt.UTC),
    "contact.custom_attributes.plan": "gold",
    "contact.custom_attributes.meta": {"a": 1},
    "contact.tags": [],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hi {{contact.name}}!", "Hi Ana María!"),
        ("Hi {{ contact.name }}!", "Hi Ana María!"),
        ("Hi {{   contact.name\t}}!", "Hi Ana María!"),
        ("no placeholders", "no placeholders"),
        ("", ""),
        ("{{contact.name}}{{contact.name}}", "Ana MaríaAna María"),
        ('Hi {{ contact.email | default: "there" }}', "Hi there"),
        ("Hi {{ contact.email | default: 'there' }}", "Hi there"),
        ('Hi {{ contact.phone | default: "there" }}', "Hi there"),
        ('Hi {{ contact.language | default: "there" }}', "Hi there"),
        ('Hi {{ contact.name | default: "there" }}', "Hi Ana María"),
        ('{{ contact.tags | default: "none" }}', "none"),
        ('{{ contact.email | default: "" }}', ""),
        ('{{ contact.email | default: "a | b" }}', "a | b"),
        ("{{ contact.name | upcase }}", "ANA MARÍA"),
        ("{{ contact.name | downcase }}", "ana maría"),
        ("{{ contact.custom_attributes.plan | capitalize }}", "Gold"),
        ('{{ contact.email | default: "friend" | upcase }}', "FRIEND"),
        ("{{conversation.tags}}", "vip, billing"),
        ("{{conversation.unread_count}}", "3"),
        ("{{conversation.age_minutes}}", "2.5"),
        ("{{conversation.ai_active}}", "false"),
        ("{{conversation.assignee_id}}", "6f1c1f0e-8a43-4c55-9d6b-1f6f5d0b3a11"),
        ("{{conversation.created_at}}", "2026-03-08T09:00:00+00:00"),
        ("{{contact.custom_attributes.meta}}", '{"a": 1}'),
        ("{{contact.custom_attributes.missing}}!", "!"),
        ("{{ unknown.thing }}x", "x"),
        ("{{ contact.name", "{{ contact.name"),
        ("a {{ 1bad }} b", "a {{ 1bad }} b"),
        ("{{}}", "{{}}"),
        ("{ {contact.name} }", "{ {contact.name} }"),
        ("{{{contact.name}}}", "{{{contact.name}}}"),
        ("price: {{ contact.name }} }}", "price: Ana María }}"),
        ("😀 {{contact.name}} 😀", "😀 Ana María 😀"),
    ],
)
def test_render(template, expected):
    assert render(template, FACTS) == expected


def test_values_are_not_evaluated_again():
    assert render("{{contact.name}}", {"contact.name": "{{contact.email}}"}) == "{{contact.email}}"


@pytest.mark.parametrize(
    "template",
    [
        "Hi {{contact.name}}",
        'Hi {{ contact.name | default: "there" }}!',
        "{{ conversation.custom_attributes.order_id }}",
        "{{ time.weekday | capitalize }}",
        "plain",
        "",
    ],
)
def test_valid_templates(template):
    assert validate_template(template, path="actions[0].params.body") == []


@pytest.mark.parametrize(
    ("template", "expected_codes"),
    [
        ("Hi {{ contact.nmae }}", ["unknown_variable"]),
        ("Hi {{ contact.name", ["unclosed_placeholder"]),
        ("{{ 1bad }}", ["invalid_placeholder"]),
        ("{{ contact.name | shout }}", ["unknown_filter"]),
        ("{{ contact.name | default }}", ["missing_filter_argument"]),
        ('{{ contact.name | upcase: "x" }}', ["unexpected_filter_argument"]),
        ("{{ nope | shout }}", ["unknown_variable", "unknown_filter"]),
        ("{{ a }} {{ b }}", ["unknown_variable", "unknown_variable"]),
        ("x" * (MAX_TEMPLATE_LENGTH + 1), ["value_too_long"]),
        ("{{contact.name}}" * (MAX_PLACEHOLDERS + 1), ["too_many_placeholders"]),
        (5, ["wrong_value_type"]),
        (None, ["wrong_value_type"]),
    ],
)
def test_invalid_templates(template, expected_codes):
    problems = validate_template(template, path="actions[1].params.body")
    assert [code for _, code in codes(problems)] == expected_codes
    assert all(p.path == "actions[1].params.body" for p in problems)


def test_variables_of():
    assert variables_of('{{contact.name}} {{ x | default: "y" }}') == ["contact.name", "x"]
