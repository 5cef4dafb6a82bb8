"""Evaluate condition trees: compiled once into closures, then run per event.

``compile_conditions`` turns a *validated* tree into three closures: a short-circuiting
predicate (``trace=False``), a tracing walk that visits every leaf in tree order and
records what it saw (``trace=True``, dry-run and a run's trace rebuilt on read), and an
outcome walk that visits every leaf too but keeps one character per leaf (:func:`outcomes`,
the worker's hot path: a run stores that string, and its trace is rebuilt from it, the
rule snapshot and the facts). All use the same per-leaf tests from
:mod:`shared.automation.operators`, so they always agree.

Pure: no I/O, no clock. ``facts`` maps attribute names to values (an attribute the event does
not have is absent; None counts as absent); ``changes`` maps attribute names to
``(before, after)`` for the ``changed_to`` / ``changed_from`` operators.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.automation import operators
from shared.automation.attributes import lookup
from shared.automation.problems import index, key, type_name

#: Seen strings longer than this are cut in traces (runs store them).
TRACE_TEXT_LIMIT = 500

Facts = Mapping[str, Any]
Changes = Mapping[str, Any] | None
Predicate = Callable[[Facts, Changes], bool]
Tracer = Callable[[Facts, Changes, list], bool]
Outcome = Callable[[Facts, Changes], tuple[bool, str]]

#: A leaf's outcome character: matched, not matched, its regular expression ran out of time.
MATCHED, NOT_MATCHED, TIMED_OUT = "1", "0", "t"
REGEX_TIMEOUT_NOTE = "the regular expression ran out of time"
_YES, _NO, _TIMED_OUT = (True, MATCHED), (False, NOT_MATCHED), (False, TIMED_OUT)

_NO_CHANGES: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Compiled:
    """A compiled condition tree; immutable, safe to cache and share between threads."""

    predicate: Predicate = field(repr=False)
    tracer: Tracer = field(repr=False)
    outcome: Outcome = field(repr=False)
    leaf_count: int = 0


@dataclass(frozen=True)
class Evaluation:
    matched: bool
    #: One item per leaf, in tree order (empty when evaluated with ``trace=False``).
    trace: list[dict[str, Any]]


def evaluate(
    compiled: Compiled, facts: Facts, changes: Changes = None, *, trace: bool = True
) -> Evaluation:
    """Whether the facts (and changes) satisfy the tree; with the per-leaf trace if asked."""
    changes = changes or _NO_CHANGES
    if not trace:
        return Evaluation(compiled.predicate(facts, changes), [])
    items: list[dict[str, Any]] = []
    return Evaluation(compiled.tracer(facts, changes, items), items)


def outcomes(compiled: Compiled, facts: Facts, changes: Changes = None) -> tuple[bool, str]:
    """Whether the facts (and changes) satisfy the tree, and each leaf's outcome in tree
    order, one character each (:data:`MATCHED`, :data:`NOT_MATCHED`, :data:`TIMED_OUT`).

    PERF: what a run stores instead of its trace (no per-leaf dict, nothing to encode);
    :func:`rebuild_trace` turns it back into the trace :func:`evaluate` would have made.
    """
    return compiled.outcome(facts, changes or _NO_CHANGES)


def rebuild_trace(
    compiled: Compiled, facts: Facts, changes: Changes, stored: str
) -> list[dict[str, Any]]:
    """The trace of an evaluation that stored the leaf outcomes ``stored`` (see
    :func:`outcomes`): the tracing walk over the same facts, with each leaf's outcome
    as it was then (a timed-out regular expression, or code that has changed since,
    can decide a leaf otherwise now)."""
    items: list[dict[str, Any]] = []
    compiled.tracer(facts, changes or _NO_CHANGES, items)
    if len(items) != len(stored):
        return items  # not this tree's outcomes: the walk as it is now
    for item, code in zip(items, stored, strict=True):
        if code == TIMED_OUT:
            item["matched"], item["note"] = False, REGEX_TIMEOUT_NOTE
        elif item["matched"] != (code == MATCHED):
            item["matched"] = code == MATCHED
            item.pop("note", None)
    return items


def compile_conditions(tree: Mapping[str, Any], *, path: str = "conditions") -> Compiled:
    """Compile a tree that :func:`validate_conditions` accepted (raises on an invalid one)."""
    counter = [0]
    predicate, tracer, outcome = _compile_group(tree, path, counter)
    return Compiled(predicate, tracer, outcome, counter[0])


# --- groups -----------------------------------------------------------------------------


def _compile_group(node: Mapping[str, Any], path: str, counter: list[int]) -> tuple[Any, Any]:
    children_path = key(path, "conditions")
    compiled = []
    for i, child in enumerate(node["conditions"]):
        child_path = index(children_path, i)
        if "match" in child or "conditions" in child:
            compiled.append(_compile_group(child, child_path, counter))
        else:
            counter[0] += 1
            compiled.append(_compile_leaf(child, child_path))
    predicates = tuple(p for p, _, _ in compiled)
    tracers = tuple(tr for _, tr, _ in compiled)
    walks = tuple(o for _, _, o in compiled)
    want_all = node["match"] == "all"
    if len(predicates) == 1:
        return predicates[0], tracers[0], walks[0]

    # PERF: plain loops, not all()/any() over a generator: this is the hot path.
    if want_all:

        def predicate(facts: Facts, changes: Changes) -> bool:
            for test in predicates:  # noqa: SIM110
                if not test(facts, changes):
                    return False
            return True
    else:

        def predicate(facts: Facts, changes: Changes) -> bool:
            for test in predicates:  # noqa: SIM110
                if test(facts, changes):
                    return True
            return False

    def tracer(facts: Facts, changes: Changes, out: list) -> bool:
        # Every child runs (no short-circuit) so the trace shows every leaf.
        results = [trace(facts, changes, out) for trace in tracers]
        return all(results) if want_all else any(results)

    def outcome(facts: Facts, changes: Changes) -> tuple[bool, str]:
        # Every child runs, like the tracer; their characters join in tree order.
        matched, codes = want_all, []
        for walk in walks:
            child, code = walk(facts, changes)
            codes.append(code)
            if child != want_all:
                matched = child
        return matched, "".join(codes)

    return predicate, tracer, outcome


# --- leaves -----------------------------------------------------------------------------


def _compile_leaf(node: Mapping[str, Any], path: str) -> tuple[Predicate, Tracer, Outcome]:
    name = node["attribute"]
    operator = node["operator"]
    expected = node.get("value")
    attribute = lookup(name)
    if attribute is None:
        raise ValueError(f"{path}: unknown attribute {name!r} (validate before compiling)")
    check = operators.build(attribute.type, operator, expected)
    test, guard = check.test, check.guard
    base = {"path": path, "attribute": name, "operator": operator, "expected": expected}

    if check.reads == "change":

        def predicate(facts: Facts, changes: Changes) -> bool:
            change = _change_of(changes, name)
            return change is not None and test(change)

        def tracer(facts: Facts, changes: Changes, out: list) -> bool:
            change = _change_of(changes, name)
            if change is None:
                return _record(out, base, None, False, "unchanged")
            seen = {"before": _jsonable(change[0]), "after": _jsonable(change[1])}
            return _record(out, base, seen, test(change), None)

        def outcome(facts: Facts, changes: Changes) -> tuple[bool, str]:
            return _YES if predicate(facts, changes) else _NO

        return predicate, tracer, outcome

    if check.reads == "presence":

        def predicate(facts: Facts, changes: Changes) -> bool:
            return test(facts.get(name))

        def tracer(facts: Facts, changes: Changes, out: list) -> bool:
            seen = facts.get(name)
            note = "absent" if seen is None else None
            return _record(out, base, _jsonable(seen), test(seen), note)

        def outcome(facts: Facts, changes: Changes) -> tuple[bool, str]:
            return _YES if test(facts.get(name)) else _NO

        return predicate, tracer, outcome

    def safe_test(seen: Any) -> tuple[bool, str | None]:
        try:
            matched = test(seen)
        except TimeoutError:
            return False, REGEX_TIMEOUT_NOTE
        if not matched and not guard(seen):
            return False, f"type mismatch: saw {type_name(seen)}"
        return matched, None

    if operator == operators.t.MATCHES:

        def predicate(facts: Facts, changes: Changes) -> bool:
            seen = facts.get(name)
            return seen is not None and safe_test(seen)[0]

        def outcome(facts: Facts, changes: Changes) -> tuple[bool, str]:
            seen = facts.get(name)
            if seen is None:
                return _NO
            try:
                return _YES if test(seen) else _NO
            except TimeoutError:
                return _TIMED_OUT
    else:

        def predicate(facts: Facts, changes: Changes) -> bool:
            seen = facts.get(name)
            return seen is not None and test(seen)

        def outcome(facts: Facts, changes: Changes) -> tuple[bool, str]:
            seen = facts.get(name)
            return _YES if seen is not None and test(seen) else _NO

    def tracer(facts: Facts, changes: Changes, out: list) -> bool:
        seen = facts.get(name)
        if seen is None:
            return _record(out, base, None, False, "absent")
        matched, note = safe_test(seen)
        return _record(out, base, _jsonable(seen), matched, note)

    return predicate, tracer, outcome


def _change_of(changes: Changes, name: str) -> tuple[Any, Any] | None:
    change = changes.get(name) if changes else None
    if isinstance(change, list | tuple) and len(change) == 2:
        return change[0], change[1]
    return None


def _record(out: list, base: dict, seen: Any, matched: bool, note: str | None) -> bool:
    item = {**base, "seen": seen, "matched": matched}
    if note:
        item["note"] = note
    out.append(item)
    return matched


def _jsonable(value: Any) -> Any:
    """The seen value as JSON can store it (ids and datetimes as strings, long text cut)."""
    kind = type(value)
    if kind is str and len(value) <= TRACE_TEXT_LIMIT:
        return value  # PERF: the common case first
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSONB has no NaN/Infinity
    if isinstance(value, str):
        if len(value) > TRACE_TEXT_LIMIT:
            return value[:TRACE_TEXT_LIMIT] + "…"
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
