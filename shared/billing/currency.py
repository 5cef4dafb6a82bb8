"""ISO 4217 currencies: which codes exist and how many minor units each has.

Every amount is an integer in minor units; the exponent says how to show it (``1999`` USD
is ``19.99``, ``500`` JPY is ``500``). A short table rather than a dependency: the list
changes a few times a decade and Babel's CLDR digits differ from ISO 4217's minor units
for some codes (e.g. ``IDR``), which would make a display disagree with what is charged.
Funds codes and precious metals (``XAU``, ``USN``...) are left out: nothing is priced in them.
"""

from __future__ import annotations

#: Active ISO 4217 codes (list one, 2024 edition) and their minor-unit exponents.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW"), 0),
    **dict.fromkeys(("PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
    **dict.fromkeys(
        [
            "AED",
            "AFN",
            "ALL",
            "AMD",
            "ANG",
            "AOA",
            "ARS",
            "AUD",
            "AWG",
            "AZN",
            "BAM",
            "BBD",
            "BDT",
            "BGN",
            "BMD",
            "BND",
            "BOB",
            "BRL",
            "BSD",
            "BTN",
            "BWP",
            "BYN",
            "BZD",
            "CAD",
            "CDF",
            "CHF",
            "CNY",
            "COP",
            "CRC",
            "CUP",
            "CVE",
            "CZK",
            "DKK",
            "DOP",
            "DZD",
            "EGP",
            "ERN",
            "ETB",
            "EUR",
            "FJD",
            "FKP",
            "GBP",
            "GEL",
            "GHS",
            "GIP",
            "GMD",
            "GTQ",
            "GYD",
            "HKD",
            "HNL",
            "HTG",
            "HUF",
            "IDR",
            "ILS",
            "INR",
            "IRR",
            "JMD",
            "KES",
            "KGS",
            "KHR",
            "KPW",
            "KYD",
            "KZT",
            "LAK",
            "LBP",
            "LKR",
            "LRD",
            "LSL",
            "MAD",
            "MDL",
            "MGA",
            "MKD",
            "MMK",
            "MNT",
            "MOP",
            "MRU",
            "MUR",
            "MVR",
            "MWK",
            "MXN",
            "MYR",
            "MZN",
            "NAD",
            "NGN",
            "NIO",
            "NOK",
            "NPR",
            "NZD",
            "PAB",
            "PEN",
            "PGK",
            "PHP",
            "PKR",
            "PLN",
            "QAR",
            "RON",
            "RSD",
            "RUB",
            "SAR",
            "SBD",
            "SCR",
            "SDG",
            "SEK",
            "SGD",
            "SHP",
            "SLE",
            "SOS",
            "SRD",
            "SSP",
            "STN",
            "SVC",
            "SYP",
            "SZL",
            "THB",
            "TJS",
            "TMT",
            "TOP",
            "TRY",
            "TTD",
            "TWD",
            "TZS",
            "UAH",
            "USD",
            "UYU",
            "UZS",
            "VED",
            "VES",
            "WST",
            "XCD",
            "XCG",
            "YER",
            "ZAR",
            "ZMW",
            "ZWG",
        ],
        2,
    ),
}

#: Every code accepted, sorted (for error messages and documentation).
CODES: tuple[str, ...] = tuple(sorted(_EXPONENTS))


def is_known(code: str) -> bool:
    """Whether ``code`` (upper case, as stored) is an active ISO 4217 currency."""
    return code in _EXPONENTS


def exponent(code: str) -> int:
    """Minor units per major unit as a power of ten (2 for USD, 0 for JPY, 3 for KWD)."""
    try:
        return _EXPONENTS[code]
    except KeyError:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code") from None


def normalize(code: str) -> str:
    """``code`` upper-cased if it is a known currency; ``ValueError`` otherwise."""
    upper = code.strip().upper()
    if not is_known(upper):
        raise ValueError("not an ISO 4217 currency code, e.g. USD or EUR")
    return upper


def format_amount(amount: int, code: str) -> str:
    """``amount`` minor units as a locale-neutral display string: ``-1234`` USD -> ``-12.34 USD``.

    Integer arithmetic only, so no amount is ever rounded on its way to a screen.
    """
    places = exponent(code)
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**places)
    shown = f"{whole:,}" + (f".{part:0{places}d}" if places else "")
    return f"{sign}{shown} {code}"
