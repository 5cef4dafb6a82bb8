"""The pace is the sending account's: campaigns on one number share its rate, taking turns;
campaigns on different numbers do not wait for each other.

Through the real in-process worker (delays slept, not moved): the batches' times are
their recipients' ``processed_at`` (the database clock of the batch's transaction).
"""

from __future__ import annotations

import datetime as dt
import itertools

from tests.campaigns.conftest import TEMPLATE, Shop, settled
from tests.waiting import wait_until

INTERVAL = dt.timedelta(milliseconds=400)


def _completed(shop: Shop, *campaigns: dict) -> None:
    """Every campaign completed and every one of its sends answered.

    NOTE: a campaign completes once nothing is left to make; its messages may still be on
    their way. Waited for here, so no late send reaches a later test's scripted Graph.
    """

    def done():
        return all(shop.get(c)["status"] == "completed" for c in campaigns)

    wait_until(done, "every campaign completed", timeout=30)
    for campaign in campaigns:
        settled(shop, campaign, timeout=30)


def _batches(shop: Shop, *campaigns: dict) -> list[tuple[dt.datetime, str]]:
    """(time, campaign name) of every batch that made messages, in time order."""
    made = {
        (r.processed_at, campaign["name"])
        for campaign in campaigns
        for r in shop.recipients(campaign)
        if r.processed_at is not None
    }
    return sorted(made)


def _gaps(batches: list[tuple[dt.datetime, str]]) -> list[dt.timedelta]:
    return [b[0] - a[0] for a, b in itertools.pairwise(batches)]


def test_two_campaigns_on_one_number_share_its_pace_taking_turns(
    shop: Shop, fake_graph, campaign_settings
):
    """Meta's throughput limit is the number's: two campaigns each paced on their own sent
    at twice the account's rate (130429, the number's quality down)."""
    campaign_settings(batch_size=1, batch_interval_ms=int(INTERVAL / dt.timedelta(milliseconds=1)))
    big = shop.create(name="Big")
    shop.add(big, shop.contacts(5))
    small = shop.create(name="Small")
    shop.add(small, shop.contacts(2))
    shop.send(big)
    shop.send(small)
    _completed(shop, big, small)

    batches = _batches(shop, big, small)
    assert len(batches) == 7
    assert min(_gaps(batches)) >= INTERVAL, batches
    # Turns: once the small one waits, it gets every other one (the big one's turn taken
    # before it came goes first); it is not left behind the big one's whole audience.
    order = [name for _, name in batches]
    first, second = (i for i, name in enumerate(order) if name == "Small")
    assert second - first == 2, order


def test_campaigns_on_two_numbers_keep_their_own_pace(shop: Shop, fake_graph, campaign_settings):
    campaign_settings(batch_size=1, batch_interval_ms=int(INTERVAL / dt.timedelta(milliseconds=1)))
    second = shop.meta_account("whatsapp")
    shop.approve(TEMPLATE, account=second)
    first_c = shop.create(name="First")
    shop.add(first_c, shop.contacts(4))
    second_c = shop.create(name="Second", integration_account_id=str(second["id"]))
    shop.add(second_c, shop.contacts(4))
    shop.send(first_c)
    shop.send(second_c)
    _completed(shop, first_c, second_c)

    for campaign in (first_c, second_c):
        assert min(_gaps(_batches(shop, campaign))) >= INTERVAL
    both = _batches(shop, first_c, second_c)
    # In parallel (three intervals each): eight batches one account's interval apart would
    # take seven. The slack is for a loaded machine's late jobs.
    assert both[-1][0] - both[0][0] < 6 * INTERVAL, both
