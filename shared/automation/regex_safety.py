"""Refuse, at save time, ``matches`` patterns that could not be evaluated safely.

Three gates: a length bound; the pattern must compile; and it must not be catastrophic,
judged twice: statically (a quantified group that itself holds an unbounded quantifier,
the ``(a+)+`` family) and by a probe that searches adversarial inputs built from the
pattern's own characters under a time bound. The runtime search has its own timeout too
(``operators.REGEX_TIMEOUT_SECONDS``), so a pattern that slips through cannot stall a worker.
"""

from __future__ import annotations

import regex

from shared.automation.operators import REGEX_TIMEOUT_SECONDS, compile_pattern
from shared.automation.problems import Problem

MAX_PATTERN_LENGTH = 256
PROBE_LENGTH = 4096
_PROBE_FILLERS = ("a", "0", " ", "\n", "-", ".")
#: Highest bounded repeat count still treated as harmless when nested.
_MAX_NESTED_REPEAT = 16
#: What follows "(" in special groups: (?:  (?=  (?!  (?<=  (?<!  (?>  (?P<n>  (?<n>  (?i:  (?i)
_GROUP_PREFIX = regex.compile(r"\?(?:P?<\w+>|<[=!]|[:=!>|]|[\w\-]*:|[\w\-]*\))")


def pattern_problems(pattern: str, path: str) -> list[Problem]:
    if len(pattern) > MAX_PATTERN_LENGTH:
        return [
            Problem(path, "regex_too_long", f"at most {MAX_PATTERN_LENGTH} characters in a pattern")
        ]
    if pattern == "":
        return [Problem(path, "invalid_regex", "the pattern is empty")]
    try:
        compiled = compile_pattern(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        return [Problem(path, "invalid_regex", f"not a valid regular expression: {exc}")]
    if has_nested_quantifier(pattern):
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


def has_nested_quantifier(pattern: str) -> bool:
    """Whether an unbounded repetition applies to a group holding another repetition."""
    # One frame per open group: does it hold a quantifier (directly or in a subgroup)?
    stack: list[bool] = [False]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _skip_class(pattern, i)
            continue
        if c == "(":
            prefix = _GROUP_PREFIX.match(pattern, i + 1)
            i = prefix.end() if prefix else i + 1
            if not (prefix and prefix.group().endswith(")")):  # not a bare flags group (?i)
                stack.append(False)
            continue
        if c == ")" and len(stack) > 1:
            inner = stack.pop()
            i += 1
            end, unbounded = _quantifier_at(pattern, i)
            if end > i and unbounded and inner:
                return True
            if end > i or inner:
                stack[-1] = True
            i = max(end, i)
            continue
        end, _ = _quantifier_at(pattern, i)
        if end > i:
            stack[-1] = True
            i = end
            continue
        i += 1
    return False


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


def _quantifier_at(pattern: str, i: int) -> tuple[int, bool]:
    """(end index, unbounded) of a quantifier starting at ``i``; end == i when none."""
    if i >= len(pattern):
        return i, False
    c = pattern[i]
    if c in "*+":
        end, unbounded = i + 1, True
    elif c == "?":
        end, unbounded = i + 1, False
    elif c == "{":
        close = pattern.find("}", i)
        body = pattern[i + 1 : close] if close > 0 else ""
        parts = body.split(",")
        if not body or len(parts) > 2 or not all(p.strip().isdigit() or p == "" for p in parts):
            return i, False
        end = close + 1
        most = parts[-1].strip()
        unbounded = most == "" or int(most) > _MAX_NESTED_REPEAT
    else:
        return i, False
    if end < len(pattern) and pattern[end] in "?+":
        end += 1  # lazy or possessive modifier
    return end, unbounded


def _probes(pattern: str) -> list[str]:
    literals = sorted({c for c in pattern if c.isalnum() or c in " -_.@:/"})[:12]
    mixed = "".join(literals) or "a"
    probes = [c * PROBE_LENGTH + "\x00!" for c in (*literals, *_PROBE_FILLERS)]
    probes.append((mixed * (PROBE_LENGTH // len(mixed) + 1))[:PROBE_LENGTH] + "\x00!")
    return probes


def survives_probe(compiled: regex.Pattern, pattern: str) -> bool:
    """Whether every adversarial probe finishes within the runtime bound."""
    for probe in _probes(pattern):
        try:
            compiled.search(probe, timeout=REGEX_TIMEOUT_SECONDS)
        except TimeoutError:
            return False
    return True
