"""Refuse, at save time, ``matches`` patterns that could not be evaluated safely.

The gates, in order:

1. a length bound;
2. repetition counts: none above :data:`MAX_REPEAT`, and no counted repetition of a group
   that holds another one (``(?:a{100}){100}``): the ``regex`` package expands counted
   repeats when it compiles, and large or nested ones take seconds to minutes to compile
   (``a{4294967294}`` never returns), so this is checked before compiling;
3. the pattern must compile;
4. no unbounded repetition of a group that holds an unbounded repetition (``(a+)+``,
   ``(\\w+\\s?)*``): the classic exponential backtracking;
5. a probe: the pattern searches adversarial inputs built from its own characters, each
   under the runtime time bound and all within a budget; one timeout refuses it
   (``(a|aa)+$``), and so does a pattern slow on every input (fuzzy ``{e<=3}`` matching).

The runtime search has its own timeout (``operators.REGEX_TIMEOUT_SECONDS``) too, so a
pattern that slips through every gate still cannot stall a worker.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import regex

from shared.automation.operators import REGEX_TIMEOUT_SECONDS, compile_pattern
from shared.automation.problems import Problem

MAX_PATTERN_LENGTH = 256
#: Highest count in ``{n}`` / ``{n,m}``.
MAX_REPEAT = 100
#: Counts above this nest like ``*`` (``(.*a){20}`` backtracks like ``(.*a)*``).
_LOOSE_REPEAT = 16
PROBE_LENGTH = 4096
#: CPU a pattern's probes may take in all; normal patterns need well under a millisecond.
PROBE_BUDGET_SECONDS = 0.25
_PROBE_FILLERS = ("a", "0", " ", "\n", "-", ".")
#: What follows "(" in special groups: (?:  (?=  (?!  (?<=  (?<!  (?>  (?P<n>  (?<n>  (?i:  (?i)
_GROUP_PREFIX = regex.compile(r"\?(?:P?<\w+>|<[=!]|[:=!>|]|[\w\-]*:|[\w\-]*\))")
_COUNT = regex.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


class Shape(NamedTuple):
    """What the structural scan found (each flag refuses the pattern)."""

    large_count: bool = False
    nested_count: bool = False
    nested_unbounded: bool = False


class _Quantifier(NamedTuple):
    end: int
    unbounded: bool = False
    counted: bool = False
    too_large: bool = False


def pattern_problems(pattern: str, path: str) -> list[Problem]:
    """Problems of a ``matches`` pattern (at ``path``); [] when it is safe to run."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return [
            Problem(path, "regex_too_long", f"at most {MAX_PATTERN_LENGTH} characters in a pattern")
        ]
    if pattern == "":
        return [Problem(path, "invalid_regex", "the pattern is empty")]
    found = shape(pattern)
    if found.large_count:
        return [Problem(path, "regex_too_slow", f"repetition counts go up to {MAX_REPEAT}")]
    if found.nested_count:
        return [
            Problem(path, "regex_too_slow", "a counted repetition of a group holding another one")
        ]
    try:
        compiled = compile_pattern(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        return [Problem(path, "invalid_regex", f"not a valid regular expression: {exc}")]
    if found.nested_unbounded:
        return [
            Problem(
                path,
                "regex_too_slow",
                "a repeated group holds a repetition, as in (a+)+: it can take exponential "
                "time; rewrite it without the nesting",
            )
        ]
    if not survives_probe(compiled, pattern):
        return [
            Problem(
                path,
                "regex_too_slow",
                "the pattern takes too long on some inputs (catastrophic backtracking)",
            )
        ]
    return []


def shape(pattern: str) -> Shape:
    """Scan a pattern's groups and quantifiers (escapes and character classes skipped)."""
    # One frame per open group: [holds an unbounded repetition, holds a counted one].
    stack: list[list[bool]] = [[False, False]]
    large = nested_count = nested_unbounded = False
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
        elif c == "[":
            i = _skip_class(pattern, i)
        elif c == "(":
            prefix = _GROUP_PREFIX.match(pattern, i + 1)
            i = prefix.end() if prefix else i + 1
            if not (prefix and prefix.group().endswith(")")):  # not a bare flags group (?i)
                stack.append([False, False])
        elif c == ")" and len(stack) > 1:
            holds_unbounded, holds_counted = stack.pop()
            q = _quantifier_at(pattern, i + 1)
            large |= q.too_large
            nested_unbounded |= q.unbounded and holds_unbounded
            nested_count |= q.counted and holds_counted
            stack[-1][0] |= holds_unbounded or q.unbounded
            stack[-1][1] |= holds_counted or q.counted
            i = max(q.end, i + 1)
        else:
            q = _quantifier_at(pattern, i)
            if q.end > i:
                large |= q.too_large
                stack[-1][0] |= q.unbounded
                stack[-1][1] |= q.counted
                i = q.end
            else:
                i += 1
    return Shape(large, nested_count, nested_unbounded)


def has_nested_quantifier(pattern: str) -> bool:
    """Whether an unbounded repetition applies to a group holding another one."""
    return shape(pattern).nested_unbounded


def _skip_class(pattern: str, i: int) -> int:
    """The index after the character class opening at ``i``."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    depth = 1
    while j < len(pattern) and depth:
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern[j] == "[":
            depth += 1
        elif pattern[j] == "]":
            depth -= 1
        j += 1
    return j


def _quantifier_at(pattern: str, i: int) -> _Quantifier:
    """The quantifier starting at ``i`` (``end == i`` when there is none)."""
    if i >= len(pattern):
        return _Quantifier(i)
    c = pattern[i]
    if c in "*+":
        q = _Quantifier(i + 1, unbounded=True)
    elif c == "?":
        q = _Quantifier(i + 1)
    elif c == "{" and (count := _COUNT.match(pattern, i)):
        low, high = count[1], count[2]
        if low == "" and high is None:
            return _Quantifier(i)  # "{}" is a literal
        numbers = [int(x) for x in (low, high) if x]
        most = int(high) if high else (int(low) if high is None else None)
        q = _Quantifier(
            count.end(),
            unbounded=most is None or most > _LOOSE_REPEAT,
            counted=most is not None and most > 1,
            too_large=any(x > MAX_REPEAT for x in numbers),
        )
    else:
        return _Quantifier(i)
    if q.end < len(pattern) and pattern[q.end] in "?+":
        q = q._replace(end=q.end + 1)  # lazy or possessive modifier
    return q


def _probes(pattern: str) -> list[str]:
    literals = sorted({c for c in pattern if c.isalnum() or c in " -_.@:/"})[:12]
    mixed = "".join(literals) or "a"
    probes = [c * PROBE_LENGTH + "\x00!" for c in (*literals, *_PROBE_FILLERS)]
    probes.append((mixed * (PROBE_LENGTH // len(mixed) + 1))[:PROBE_LENGTH] + "\x00!")
    return probes


def survives_probe(compiled: regex.Pattern, pattern: str) -> bool:
    """Whether every adversarial probe finishes within the runtime bound, and all of them
    within :data:`PROBE_BUDGET_SECONDS` (so saving a rule stays quick)."""
    deadline = time.monotonic() + PROBE_BUDGET_SECONDS
    for probe in _probes(pattern):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            compiled.search(probe, timeout=min(REGEX_TIMEOUT_SECONDS, remaining))
        except TimeoutError:
            return False
    return True
