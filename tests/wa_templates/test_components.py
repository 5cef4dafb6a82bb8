"""The pure rules: what a send must give for each kind of component Meta lists."""

from __future__ import annotations

import pytest

from shared.channels.templates import components as rules


def _text(*values):
    return [{"type": "text", "text": v} for v in values]


def test_variables_are_counted_once_each_in_order_of_first_use():
    assert rules.variables("Hi {{1}}, {{2}} and {{1}} again") == ["1", "2"]
    assert rules.variables("Hi {{ first_name }}") == ["first_name"]
    assert rules.variables(None) == [] and rules.variables("no variables") == []


def test_named_parameters_count_like_positional_ones():
    want = rules.expected([{"type": "BODY", "text": "Hi {{first_name}}, order {{order}}"}])
    assert want.body_variables == ["first_name", "order"]
    given = [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "parameter_name": "first_name", "text": "Ada"},
                {"type": "text", "parameter_name": "order", "text": "A-1"},
            ],
        }
    ]
    assert rules.check_send(want, given, header_media_url=None) == given


def test_authentication_templates_need_the_code_in_the_body_and_the_button():
    listed = [
        {"type": "BODY", "text": "*{{1}}* is your verification code."},
        {
            "type": "BUTTONS",
            "buttons": [
                {
                    "type": "URL",
                    "text": "Copy code",
                    "url": "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code=otp{{1}}",
                }
            ],
        },
    ]
    want = rules.expected(listed)
    body = {"type": "body", "parameters": _text("123456")}
    button = {"type": "button", "sub_type": "url", "index": 0, "parameters": _text("123456")}
    assert rules.check_send(want, [body, button], header_media_url=None)
    with pytest.raises(rules.ComponentProblems) as problem:
        rules.check_send(want, [body], header_media_url=None)
    assert problem.value.details == [
        {"field": "template.button[0]", "message": "expects 1 parameter(s), got none"}
    ]


def test_copy_code_buttons_need_their_coupon_and_location_headers_their_location():
    want = rules.expected(
        [
            {"type": "HEADER", "format": "LOCATION"},
            {"type": "BODY", "text": "Visit us"},
            {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "SAVE10"}]},
        ]
    )
    location = {
        "type": "header",
        "parameters": [{"type": "location", "location": {"latitude": 1, "longitude": 2}}],
    }
    coupon = {
        "type": "button",
        "sub_type": "copy_code",
        "index": "0",
        "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
    }
    assert rules.check_send(want, [location, coupon], header_media_url=None)
    with pytest.raises(rules.ComponentProblems) as problem:
        rules.check_send(want, [coupon], header_media_url=None)
    assert [d["field"] for d in problem.value.details] == ["template.header"]


def test_new_templates_are_normalized_to_metas_case_and_checked():
    normalized = rules.normalize_new(
        [
            {"type": "header", "format": "image"},
            {"type": "body", "text": "Hi {{1}}"},
            {
                "type": "buttons",
                "buttons": [{"type": "url", "text": "Go", "url": "https://x/{{1}}"}],
            },
        ],
        "MARKETING",
        "POSITIONAL",
    )
    assert [c["type"] for c in normalized] == ["HEADER", "BODY", "BUTTONS"]
    assert normalized[0]["format"] == "IMAGE" and normalized[2]["buttons"][0]["type"] == "URL"
    # An authentication template's body is Meta's to write.
    assert rules.normalize_new([{"type": "BODY"}], "AUTHENTICATION", "POSITIONAL")

    bad = [
        ([{"type": "BODY", "text": "Hi {{Name}}"}], "NAMED", "components[0].text"),
        (
            [{"type": "BODY", "text": "x"}, {"type": "FOOTER", "text": "{{1}}"}],
            "POSITIONAL",
            "components[1].text",
        ),
        (
            [{"type": "BODY", "text": "x"}, {"type": "BUTTONS", "buttons": []}],
            "POSITIONAL",
            "components[1].buttons",
        ),
        (
            [
                {"type": "HEADER", "format": "TEXT", "text": "{{1}} {{2}}"},
                {"type": "BODY", "text": "x"},
            ],
            "POSITIONAL",
            "components[0].text",
        ),
        (["not an object"], "POSITIONAL", "components[0]"),
    ]
    for components, parameter_format, field in bad:
        with pytest.raises(rules.ComponentProblems) as problem:
            rules.normalize_new(components, "UTILITY", parameter_format)
        assert field in [d["field"] for d in problem.value.details], (components, problem.value)
