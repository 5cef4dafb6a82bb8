"""The pure automation engine's speed: rule evaluations per second on one core.

What it does, in one process (no database, no broker: the engine does no I/O):

1. generates a tenant of ``--rules`` rules (default 1,000), ``--triggered`` of them
   (default 50) triggered by ``message.created``, the rest spread over the other automation
   event types; each has 3-8 leaves in nested all/any groups with a realistic operator mix
   (text contains/starts_with on the message, enums, tags, numbers, between on the local hour,
   working hours, custom attributes, presence, and a regular expression in one rule of ten);
2. validates and compiles all of them (timed: what a rule-cache refill costs);
3. generates ``--events`` realistic ``message.created`` fact sets and evaluates the triggered
   rules against each for ``--seconds`` of CPU time: the worker's path (``trace=False``) and
   the runs/dry-run path (``trace=True``);
4. baseline, in the same run: the same predicates as straight-line Python (one generated
   ``lambda f: ...`` per rule, the code one would write by hand for each), measured the same
   way. Every engine decision is checked against the baseline's, so the bench also fails when
   they disagree.

Figures are CPU seconds of this process (one core), printed as evaluations/s and as a ratio
engine / baseline. Target: at least 20,000 rule evaluations per second per core, on both
paths (the evaluator records a run, with its trace, for every triggered rule).

Run::

    .venv/bin/python bench/automation_engine.py
    .venv/bin/python bench/automation_engine.py --rules 10000 --triggered 200 --seconds 5

Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from shared.automation.conditions import validate_conditions
from shared.automation.engine import compile_conditions, evaluate
from shared.event_types import CATALOGUE

GOAL_EVALS_PER_SECOND = 20_000
#: The scaling table: tenants of these sizes, with these many rules triggered by the event.
TOTALS = (1_000, 10_000)
TRIGGERED = (10, 50, 200)
TRIGGER = "message.created"

_VOCABULARY = (
    "hello hi refund order shipping delivery late broken invoice payment card please thanks "
    "help cancel subscription account password login price discount where when status urgent "
    "package tracking number return exchange size colour warranty support agent human bot"
)
WORDS = tuple(_VOCABULARY.split())
TAGS = ("vip", "billing", "shipping", "returns", "new", "churn-risk", "b2b", "spam", "es", "fr")
PLANS = ("free", "starter", "pro", "enterprise")
PATTERNS = (r"order #?\d{4,}", r"\b(refund|return)s?\b", r"^(hi|hello)\b", r"\d{3}-\d{4}")


# --- the tenant's rules -------------------------------------------------------------------


def _leaf(rng: random.Random, allow_regex: bool) -> dict[str, Any]:
    kind = rng.choice(
        ["contains", "contains", "starts_with", "status", "channel", "direction", "priority",
         "tags", "tags_in", "unread", "hour", "inside", "plan", "vip", "email", "age"]
        + (["regex"] if allow_regex else [])
    )  # fmt: skip
    pick = {
        "contains": ("message.content", "contains", rng.choice(WORDS)),
        "starts_with": ("message.content", "starts_with", rng.choice(WORDS[:4])),
        "status": ("conversation.status", rng.choice(["equal_to", "not_equal_to"]), "open"),
        "channel": ("conversation.channel", "equal_to", rng.choice(["whatsapp", "email"])),
        "direction": ("message.direction", "equal_to", "inbound"),
        "priority": ("conversation.priority", "in", rng.sample(["low", "normal", "high"], 2)),
        "tags": ("conversation.tags", "contains", rng.choice(TAGS)),
        "tags_in": ("contact.tags", "not_in", rng.sample(TAGS, 2)),
        "unread": ("conversation.unread_count", "greater_than", rng.randint(0, 5)),
        "hour": ("time.local_hour", "between", sorted(rng.sample(range(24), 2))),
        "inside": ("time.inside_working_hours", "equal_to", rng.random() < 0.5),
        "plan": ("contact.custom_attributes.plan", "equal_to", rng.choice(PLANS)),
        "vip": ("contact.custom_attributes.vip", "equal_to", True),
        "email": ("contact.email", rng.choice(["present", "not_present"]), None),
        "age": ("conversation.age_minutes", "less_than", rng.choice([5, 60, 1440])),
        "regex": ("message.content", "matches", rng.choice(PATTERNS)),
    }[kind]
    attribute, operator, value = pick
    leaf = {"attribute": attribute, "operator": operator}
    if value is not None:
        leaf["value"] = value
    return leaf


def generate_rule(rng: random.Random, trigger: str) -> dict[str, Any]:
    leaves = [_leaf(rng, allow_regex=rng.random() < 0.1) for _ in range(rng.randint(3, 8))]
    split = rng.randint(1, len(leaves) - 1)
    inner = {"match": rng.choice(["any", "all"]), "conditions": leaves[split:]}
    root = {"match": rng.choice(["all", "all", "any"]), "conditions": [*leaves[:split], inner]}
    return {"trigger_event_types": [trigger], "conditions": root}


def generate_rules(rng: random.Random, total: int, triggered: int) -> list[dict[str, Any]]:
    others = [e.name for e in CATALOGUE.values() if e.automation and e.name != TRIGGER]
    return [
        generate_rule(rng, TRIGGER if i < triggered else others[i % len(others)])
        for i in range(total)
    ]


def generate_facts(rng: random.Random) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "event.type": TRIGGER,
        "message.content": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))
        + (f" order #{rng.randint(100, 99999)}" if rng.random() < 0.3 else ""),
        "message.direction": rng.choice(["inbound", "inbound", "outbound"]),
        "message.sender_type": "contact",
        "message.content_type": "text",
        "conversation.status": rng.choice(["open", "open", "pending", "snoozed"]),
        "conversation.channel": rng.choice(["whatsapp", "email", "instagram", "messenger"]),
        "conversation.priority": rng.choice(["low", "normal", "high", "urgent"]),
        "conversation.tags": rng.sample(TAGS, rng.randint(0, 3)),
        "conversation.unread_count": rng.randint(0, 9),
        "conversation.age_minutes": round(rng.uniform(0, 3000), 3),
        "conversation.ai_active": rng.random() < 0.2,
        "contact.name": rng.choice(["Ana", "Budi", "Chen", "Dana"]),
        "contact.tags": rng.sample(TAGS, rng.randint(0, 2)),
        "time.local_hour": rng.randint(0, 23),
        "time.inside_working_hours": rng.random() < 0.6,
        "time.weekday": "monday",
        "contact.custom_attributes.plan": rng.choice(PLANS),
    }
    if rng.random() < 0.7:
        facts["contact.email"] = "someone@example.com"
    if rng.random() < 0.3:
        facts["contact.custom_attributes.vip"] = True
    return facts


# --- the baseline: the same predicates written straight in Python ---------------------------


def _baseline_leaf(leaf: dict[str, Any], constants: list[Any]) -> str:
    def const(value: Any) -> str:
        constants.append(value)
        return f"c[{len(constants) - 1}]"

    get = f"f.get({leaf['attribute']!r})"
    operator, value = leaf["operator"], leaf.get("value")
    if operator == "contains" and leaf["attribute"] == "message.content":
        return f"({value.casefold()!r} in ({get} or '').casefold())"
    if operator == "starts_with":
        return f"({get} or '').casefold().startswith({value.casefold()!r})"
    if operator == "contains":
        return f"({value!r} in ({get} or ()))"
    if operator == "not_in":
        return f"(({get} is not None) and not {const(frozenset(value))}.intersection({get}))"
    if operator == "equal_to" and isinstance(value, bool):
        return f"({get} is {value!r})"
    if operator == "equal_to":
        return f"({get} == {value!r})"
    if operator == "not_equal_to":
        return f"(({get} is not None) and {get} != {value!r})"
    if operator == "in":
        return f"({get} in {const(frozenset(value))})"
    if operator == "greater_than":
        return f"(({get} is not None) and {get} > {value!r})"
    if operator == "less_than":
        return f"(({get} is not None) and {get} < {value!r})"
    if operator == "between":
        return f"(({get} is not None) and {value[0]!r} <= {get} <= {value[1]!r})"
    if operator == "present":
        return f"bool({get})"
    if operator == "not_present":
        return f"(not {get})"
    if operator == "matches":
        return f"({const(re.compile(value))}.search({get} or '') is not None)"
    raise ValueError(f"no baseline for {leaf}")


def _baseline_group(node: dict[str, Any], constants: list[Any]) -> str:
    parts = [
        _baseline_group(child, constants) if "match" in child else _baseline_leaf(child, constants)
        for child in node["conditions"]
    ]
    joiner = " and " if node["match"] == "all" else " or "
    return "(" + joiner.join(parts) + ")" if parts else repr(node["match"] == "all")


def baseline(tree: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    constants: list[Any] = []
    source = "lambda f: " + _baseline_group(tree, constants)
    return eval(source, {"c": constants})  # noqa: S307 - our own generated source


# --- measuring ----------------------------------------------------------------------------


def rate(run_once: Callable[[], int], seconds: float) -> tuple[float, int]:
    """(evaluations per CPU second, evaluations) of repeated ``run_once`` calls."""
    gc.collect()
    count, started = 0, time.process_time()
    while (elapsed := time.process_time() - started) < seconds:
        count += run_once()
    return count / elapsed, count


def index_by_trigger(triggers: list[str]) -> dict[str, list[int]]:
    """Rule positions by trigger type: the evaluator's index (the service caches it per tenant)."""
    index: dict[str, list[int]] = {}
    for i, trigger in enumerate(triggers):
        index.setdefault(trigger, []).append(i)
    return index


def scaling(args: argparse.Namespace, events: list[dict[str, Any]]) -> list[tuple]:
    """Events/s for tenants of several sizes and several triggered counts, via the index."""
    rng = random.Random(args.seed + 1)
    others = [e.name for e in CATALOGUE.values() if e.automation and e.name != TRIGGER]
    largest = max(TOTALS)
    compiled = [
        compile_conditions(generate_rule(rng, TRIGGER)["conditions"]) for _ in range(largest)
    ]
    rows = []
    stream = itertools.cycle(events)
    for total in TOTALS:
        for triggered in TRIGGERED:
            triggers = [TRIGGER if i < triggered else others[i % len(others)] for i in range(total)]
            index = index_by_trigger(triggers)

            def one_event(index=index) -> int:
                facts = next(stream)
                for i in index[facts["event.type"]]:
                    evaluate(compiled[i], facts, trace=False)
                return 1

            per_second, _ = rate(one_event, args.seconds / 3)
            rows.append(
                (total, triggered, common.fmt(per_second, 0), common.fmt(1e6 / per_second, 1))
            )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=1000, help="rules in the tenant")
    parser.add_argument("--triggered", type=int, default=50, help="rules message.created triggers")
    parser.add_argument("--events", type=int, default=500, help="distinct fact sets")
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per measurement")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    rules = generate_rules(rng, args.rules, args.triggered)
    events = [generate_facts(rng) for _ in range(args.events)]

    started = time.process_time()
    problems = [p for rule in rules for p in validate_conditions(rule["conditions"])]
    validated = time.process_time()
    compiled = [compile_conditions(rule["conditions"]) for rule in rules]
    compiled_at = time.process_time()
    if problems:
        print(f"ERROR: generated rules do not validate: {problems[:3]}", file=sys.stderr)
        return common.EXIT_ERROR

    by_trigger = index_by_trigger([rule["trigger_event_types"][0] for rule in rules])
    triggered = [compiled[i] for i in by_trigger[TRIGGER]]
    hand_written = [baseline(rules[i]["conditions"]) for i in by_trigger[TRIGGER]]

    # Every decision of the engine must be the baseline's (and both modes must agree).
    mismatches = matched = 0
    for facts in events:
        for engine_rule, base_rule in zip(triggered, hand_written, strict=True):
            fast = evaluate(engine_rule, facts, trace=False).matched
            traced = evaluate(engine_rule, facts, trace=True).matched
            expected = bool(base_rule(facts))
            mismatches += fast != expected or traced != expected
            matched += expected

    stream = itertools.cycle(events)

    def engine_fast() -> int:
        facts = next(stream)
        for rule in triggered:
            evaluate(rule, facts, trace=False)
        return len(triggered)

    def engine_traced() -> int:
        facts = next(stream)
        for rule in triggered:
            evaluate(rule, facts, trace=True)
        return len(triggered)

    def hand() -> int:
        facts = next(stream)
        for rule in hand_written:
            rule(facts)
        return len(hand_written)

    base_rate, _ = rate(hand, args.seconds)
    fast_rate, _ = rate(engine_fast, args.seconds)
    traced_rate, _ = rate(engine_traced, args.seconds)
    leaves = sum(c.leaf_count for c in triggered) / len(triggered)

    common.print_table(
        f"Automation engine, one core: {args.rules} rules, {len(triggered)} triggered by "
        f"{TRIGGER} ({leaves:.1f} leaves on average), {len(events)} fact sets, "
        f"{matched / (len(events) * len(triggered)):.0%} matched",
        ["path", "evaluations/s", "µs/evaluation", "vs baseline", "events/s (all triggered)"],
        [
            (name, common.fmt(r, 0), common.fmt(1e6 / r, 2), f"{r / base_rate:.2f}x",
             common.fmt(r / len(triggered), 0))
            for name, r in (
                ("baseline: hand-written Python", base_rate),
                ("engine, worker (trace=False)", fast_rate),
                ("engine, runs/dry-run (trace=True)", traced_rate),
            )
        ],
    )  # fmt: skip
    common.print_table(
        "Cache refill (all rules of the tenant)",
        ["step", "rules", "ms", "µs/rule"],
        [
            ("validate_conditions", len(rules), common.fmt((validated - started) * 1e3),
             common.fmt((validated - started) * 1e6 / len(rules))),
            ("compile_conditions", len(rules), common.fmt((compiled_at - validated) * 1e3),
             common.fmt((compiled_at - validated) * 1e6 / len(rules))),
        ],
    )  # fmt: skip
    if not args.no_scaling:
        common.print_table(
            "Scaling: an event's cost follows the rules its type triggers, not the tenant's total",
            ["rules in tenant", "triggered by the event", "events/s", "µs/event"],
            scaling(args, events),
        )
    passed = common.print_targets(
        "Targets",
        [
            common.Target(
                "engine evaluations/s/core (trace=False)",
                common.fmt(fast_rate, 0),
                f">= {GOAL_EVALS_PER_SECOND:,}",
                fast_rate >= GOAL_EVALS_PER_SECOND,
            ),
            common.Target(
                "engine evaluations/s/core (trace=True, as runs record)",
                common.fmt(traced_rate, 0),
                f">= {GOAL_EVALS_PER_SECOND:,}",
                traced_rate >= GOAL_EVALS_PER_SECOND,
            ),
            common.Target(
                "engine decisions equal to the baseline's",
                f"{mismatches} mismatches",
                "0",
                mismatches == 0,
            ),
        ],
    )
    common.write_json(
        args.json,
        {
            "rules": args.rules,
            "triggered": len(triggered),
            "baseline_evals_per_s": base_rate,
            "engine_evals_per_s": fast_rate,
            "engine_traced_evals_per_s": traced_rate,
            "validate_ms": (validated - started) * 1e3,
            "compile_ms": (compiled_at - validated) * 1e3,
            "mismatches": mismatches,
        },
    )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
