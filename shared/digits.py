"""Whether a string is a plain decimal number, as ``int()`` reads one.

``str.isdigit()`` is also true for ``'²'`` and ``'①'``, which ``int()`` refuses, so a
guard built on it lets a header or a cursor from outside raise ValueError past it.
"""


def ascii_digits(value: str) -> bool:
    """True for a non-empty string of ``0``-``9`` only."""
    return value.isascii() and value.isdigit()
