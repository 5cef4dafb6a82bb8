"""The engine against straight Python: generated rules and facts, every decision compared.

The generators and the straight-Python translation are the benchmark's
(``bench/automation_engine.py``), so the bench's baseline is checked here too.
"""

from __future__ import annotations

import random

from bench.automation_engine import baseline, generate_facts, generate_rule
from shared.automation import operators
from shared.automation.conditions import validate_conditions
from shared.automation.engine import compile_conditions, evaluate, outcomes, rebuild_trace


def test_engine_decides_like_straight_python(monkeypatch):
    # The generated patterns are all safe: with the production 50 ms bound, a search that
    # a loaded machine paused (a full suite beside other work) timed out in one of the
    # walks compared and not the other. This compares decisions, not timing.
    monkeypatch.setattr(operators, "REGEX_TIMEOUT_SECONDS", 10.0)
    rng = random.Random(2026)
    rules = [generate_rule(rng, "message.created")["conditions"] for _ in range(300)]
    events = [generate_facts(rng) for _ in range(60)]
    assert all(validate_conditions(rule) == [] for rule in rules)
    pairs = [(compile_conditions(rule), baseline(rule)) for rule in rules]
    decisions = []
    for facts in events:
        for compiled, straight in pairs:
            expected = bool(straight(facts))
            assert evaluate(compiled, facts, trace=False).matched is expected
            traced = evaluate(compiled, facts, trace=True)
            assert traced.matched is expected
            assert len(traced.trace) == compiled.leaf_count
            # The worker's outcome walk decides alike, one character per traced leaf,
            # and the trace rebuilt from those characters is the trace.
            matched, codes = outcomes(compiled, facts)
            assert matched is expected
            assert codes == "".join("1" if item["matched"] else "0" for item in traced.trace)
            assert rebuild_trace(compiled, facts, None, codes) == traced.trace
            decisions.append(expected)
    # Both outcomes occur often enough for the comparison to mean something.
    assert 0.05 < sum(decisions) / len(decisions) < 0.95
