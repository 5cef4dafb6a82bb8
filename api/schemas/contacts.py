"""Contacts: the list query and the fields an agent may correct."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, EmailStr, Field, StringConstraints

from api.schemas.common import ListQuery, Name, Nullable, Update
from api.schemas.conversations import Tag
from shared.inbox.contacts import compact_phone
from shared.inbox.conversations import normalize_tag
from shared.models.inbox import CHANNELS

MAX_TAGS = 20
MAX_ATTRIBUTES = 50
#: Bound on the JSON size of custom_attributes (it is stored in every contact row).
MAX_ATTRIBUTES_BYTES = 16 * 1024

# ISO 3166-1 alpha-2, officially assigned codes.
ISO_COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 (a table reads better than 249 quoted strings)
)

#: ASCII digits only: ``\d`` also matched other scripts' digits, stored as typed.
_E164 = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)
#: ASCII too: a region is two letters or three digits ("es-419"), never another script's.
_BCP47 = re.compile(
    r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|\d{3}))?(-[A-Za-z0-9]{5,8})*$", re.ASCII
)


def _phone(value: str) -> str:
    """E.164-ish: a leading +, then 7 to 15 digits; spaces, dots, dashes, parentheses dropped."""
    compact = compact_phone(value)
    if not _E164.match(compact):
        raise ValueError("must be an international number like +14155550123")
    return compact


def _country(value: str) -> str:
    code = value.strip().upper()
    if code not in ISO_COUNTRIES:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code like 'US'")
    return code


def _language(value: str) -> str:
    """BCP 47-ish: language, optional script and region (``pt``, ``pt-BR``, ``zh-Hant-TW``)."""
    tag = value.strip().replace("_", "-")
    if not _BCP47.match(tag) or len(tag) > 16:
        raise ValueError("must be a BCP 47 language tag like 'en' or 'pt-BR'")
    parts = tag.split("-")
    parts[0] = parts[0].lower()
    for i, part in enumerate(parts[1:], start=1):
        parts[i] = part.title() if len(part) == 4 else part.upper() if len(part) == 2 else part
    return "-".join(parts)


def _tags(values: list[str]) -> list[str]:
    """Normalised as conversation tags are (:func:`normalize_tag`: trimmed, lower-case, spaces
    collapsed, no markup), de-duplicated (first occurrence kept).

    NOTE: one rule for every tag: a campaign's or automation's tag filter normalises its
    tag so, and a contact tagged otherwise ("VIP  Gold") was never selected.
    """
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(normalize_tag(value), None)
    if len(seen) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return list(seen)


AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
AttributeValue = Annotated[str, StringConstraints(max_length=1000)] | int | float | bool | None


def _attributes(value: dict) -> dict:
    """At most MAX_ATTRIBUTES keys and MAX_ATTRIBUTES_BYTES of JSON as UTF-8 (as stored and
    sent): ``json.dumps``'s ASCII escapes counted 6 bytes a Cyrillic letter, 12 an emoji."""
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} keys")
    if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    return value


Phone = Annotated[str, StringConstraints(max_length=40), AfterValidator(_phone)]
Country = Annotated[str, StringConstraints(max_length=2), AfterValidator(_country)]
LanguageTag = Annotated[str, StringConstraints(max_length=35), AfterValidator(_language)]
Tags = Annotated[
    list[Annotated[str, StringConstraints(max_length=200)]],
    Field(max_length=100),
    AfterValidator(_tags),
]
Attributes = Annotated[dict[AttributeKey, AttributeValue], AfterValidator(_attributes)]


class ContactListQuery(ListQuery):
    q: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    channel: Literal[CHANNELS] | None = None  # type: ignore[valid-type]
    tag: Tag | None = None


class ContactUpdate(Update):
    """``null`` clears name, email, phone, country and language; ``[]``/``{}`` clear the rest."""

    name: Nullable[Name] = None
    email: Nullable[EmailStr] = None
    phone: Nullable[Phone] = None
    country: Nullable[Country] = None
    language: Nullable[LanguageTag] = None
    tags: Tags | None = None
    custom_attributes: Attributes | None = None
    #: True: the contact opted out of campaigns (they are skipped); false: opted back in.
    opted_out: bool | None = None
