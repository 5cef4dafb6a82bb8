"""Billing catalogue: plans, coupons and add-ons (super admins write, workspaces read).

Money is an integer of minor units (``StrictInt``: ``19.99``, ``"1999"`` and ``true`` are
refused with a 422 naming the field) beside an ISO 4217 code. Rules that span fields
(one kind of discount, a duration and its periods, an expiry in the future, plans that
exist) are checked by :mod:`shared.billing.catalogue`, so every 422 names its field.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictInt, StringConstraints

from api.schemas.common import Input, Instant, ListQuery, Name, Nullable, Update
from shared.billing import currency
from shared.billing.catalogue import (
    MAX_AMOUNT,
    MAX_BIG_LIMIT,
    MAX_PERIODS,
    MAX_REDEMPTIONS,
    MAX_SEATS,
    MAX_TRIAL_DAYS,
)
from shared.schemas.base import View

#: Minor units (cents), never negative.
Amount = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]
Currency = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3),
    AfterValidator(currency.normalize),
    Field(description="ISO 4217 code, e.g. USD; stored upper-case"),
]
Code = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"),
    Field(description="letters, digits, `-` and `_`; unique, case-insensitive"),
]
Description = Annotated[str, StringConstraints(max_length=2000)]
Seats = Annotated[StrictInt, Field(ge=0, le=MAX_SEATS)]
BigLimit = Annotated[StrictInt, Field(ge=0, le=MAX_BIG_LIMIT)]
Interval = Literal["month", "year"]
Duration = Literal["once", "repeating", "forever"]
TrialDays = Annotated[StrictInt, Field(ge=0, le=MAX_TRIAL_DAYS)]
SortOrder = Annotated[StrictInt, Field(ge=-10_000, le=10_000)]
Percent = Annotated[StrictInt, Field(ge=1, le=100)]
AmountOff = Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT)]
Periods = Annotated[StrictInt, Field(ge=1, le=MAX_PERIODS)]
Redemptions = Annotated[StrictInt, Field(ge=1, le=MAX_REDEMPTIONS)]
PlanIds = Annotated[list[uuid.UUID], Field(max_length=100)]
_UNLIMITED = "null: unlimited"


# --- plans ---------------------------------------------------------------------------------


class PlanCreate(Input):
    code: Code
    name: Name
    description: Description | None = None
    currency: Currency
    price_amount: Amount
    billing_interval: Interval = "month"
    trial_days: TrialDays = 0
    seat_limit: Seats | None = Field(None, description=_UNLIMITED)
    monthly_message_limit: BigLimit | None = Field(None, description=_UNLIMITED)
    monthly_ai_reply_limit: BigLimit | None = Field(None, description=_UNLIMITED)
    storage_limit_bytes: BigLimit | None = Field(None, description=_UNLIMITED)
    features: dict[str, Any] = Field(default_factory=dict)
    is_active: StrictBool = True
    is_default_trial: StrictBool = Field(
        False, description="the plan new workspaces trial on; setting it clears the previous one"
    )
    sort_order: SortOrder = 0


class PlanUpdate(Update):
    code: Code | None = None
    name: Name | None = None
    description: Nullable[Description] = None
    currency: Currency | None = None
    price_amount: Amount | None = Field(None, description="subscriptions pay it from renewal")
    billing_interval: Interval | None = None
    trial_days: TrialDays | None = None
    seat_limit: Nullable[Seats] = None
    monthly_message_limit: Nullable[BigLimit] = None
    monthly_ai_reply_limit: Nullable[BigLimit] = None
    storage_limit_bytes: Nullable[BigLimit] = None
    features: dict[str, Any] | None = None
    is_active: StrictBool | None = None
    is_default_trial: StrictBool | None = None
    sort_order: SortOrder | None = None


class PublicPlanView(View):
    """A plan as a workspace sees it."""

    id: uuid.UUID
    code: str
    name: str
    description: str | None
    currency: str
    price_amount: int
    price_display: str
    billing_interval: str
    trial_days: int
    seat_limit: int | None
    monthly_message_limit: int | None
    monthly_ai_reply_limit: int | None
    storage_limit_bytes: int | None
    features: dict[str, Any]
    sort_order: int


class PlanView(PublicPlanView):
    is_active: bool
    is_default_trial: bool
    created_at: dt.datetime
    updated_at: dt.datetime


# --- coupons -------------------------------------------------------------------------------


class CouponCreate(Input):
    code: Code
    name: Name | None = Field(None, description="default: the code")
    percent_off: Percent | None = Field(None, description="1-100; or amount_off")
    amount_off: AmountOff | None = Field(None, description="minor units of `currency`")
    currency: Currency | None = Field(None, description="required with amount_off only")
    duration: Duration = "once"
    duration_periods: Periods | None = Field(None, description="required for `repeating` only")
    expires_at: Instant | None = Field(None, description="must be in the future")
    max_redemptions: Redemptions | None = None
    eligible_plan_ids: PlanIds = Field(default_factory=list, description="empty: every plan")
    is_active: StrictBool = True


class CouponUpdate(Update):
    """The discount itself (kind, amount, duration) can change only before a redemption."""

    name: Name | None = None
    percent_off: Nullable[Percent] = None
    amount_off: Nullable[AmountOff] = None
    currency: Nullable[Currency] = None
    duration: Duration | None = None
    duration_periods: Nullable[Periods] = None
    expires_at: Nullable[Instant] = None
    max_redemptions: Nullable[Redemptions] = None
    eligible_plan_ids: PlanIds | None = None
    is_active: StrictBool | None = None


class CouponTerms(View):
    """What a coupon gives, as a workspace may see it."""

    code: str
    name: str
    percent_off: int | None
    amount_off: int | None
    currency: str | None
    duration: str
    duration_periods: int | None
    expires_at: dt.datetime | None
    eligible_plan_ids: list[uuid.UUID]


class CouponView(CouponTerms):
    id: uuid.UUID
    max_redemptions: int | None
    times_redeemed: int
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class CouponListQuery(ListQuery):
    is_active: bool | None = None


class CouponValidate(Input):
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=63)]
    plan_id: uuid.UUID | None = Field(
        None, description="price the discount for this plan and check it is eligible"
    )


class CouponValidation(View):
    valid: Literal[True] = True
    coupon: CouponTerms
    plan_id: uuid.UUID | None
    currency: str | None
    price_amount: int | None = Field(description="the plan's price, when plan_id is given")
    discount_amount: int | None
    amount_after_discount: int | None
    discount_display: str | None


# --- add-ons -------------------------------------------------------------------------------


class AddOnCreate(Input):
    code: Code
    name: Name
    description: Description | None = None
    currency: Currency
    price_amount: Amount
    extra_seats: Seats = 0
    extra_monthly_messages: BigLimit = 0
    extra_monthly_ai_replies: BigLimit = 0
    extra_storage_bytes: BigLimit = 0
    is_active: StrictBool = True


class AddOnUpdate(Update):
    code: Code | None = None
    name: Name | None = None
    description: Nullable[Description] = None
    currency: Currency | None = None
    price_amount: Amount | None = Field(None, description="attachments pay it from renewal")
    extra_seats: Seats | None = None
    extra_monthly_messages: BigLimit | None = None
    extra_monthly_ai_replies: BigLimit | None = None
    extra_storage_bytes: BigLimit | None = None
    is_active: StrictBool | None = None


class PublicAddOnView(View):
    id: uuid.UUID
    code: str
    name: str
    description: str | None
    currency: str
    price_amount: int
    price_display: str
    extra_seats: int
    extra_monthly_messages: int
    extra_monthly_ai_replies: int
    extra_storage_bytes: int


class AddOnView(PublicAddOnView):
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime
