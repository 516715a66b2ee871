"""Money in the reports: amounts written in the workspace's currency (``currency:`` in orchestrator.yaml,
or ``--currency``), with its symbol and its decimals as the Unicode CLDR gives them (Babel): ``€1,234.50``,
``US$12.00`` beside other dollars, ``¥1,235`` (yen have no decimals). Signed amounts (a lift) carry their
sign before the symbol: ``+€3.10``, ``-€0.40``. Without a currency, amounts are plain numbers with two
decimals, as before.

Reports are written in English: the currency's symbol and decimals follow the ``en`` locale.
"""

from __future__ import annotations

from functools import cache

__all__ = ["check_currency", "currencies", "money"]

_LOCALE = "en"


@cache
def currencies() -> frozenset[str]:
    """The ISO 4217 codes Babel knows."""
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


def check_currency(code: str) -> str:
    """``code`` as an ISO 4217 currency code (upper case); ``ValueError`` saying why when it is not one."""
    text = code.strip().upper()
    if len(text) != 3 or not text.isalpha() or text not in currencies():
        raise ValueError(f"{code!r} is not an ISO 4217 currency code (for example EUR, USD, GBP, JPY)")
    return text


def money(amount: float, currency: str | None, *, signed: bool = False, plain: str = ".2f") -> str:
    """``amount`` written in ``currency`` (with the format spec ``plain`` when None); ``+`` before a
    positive amount when ``signed``. An amount that rounds to zero has no sign."""
    if currency is None:
        return format(amount, ("+" if signed else "") + plain)
    from babel.numbers import format_currency

    text = format_currency(abs(amount), currency, locale=_LOCALE)
    if text == format_currency(0, currency, locale=_LOCALE):
        return text
    if amount < 0:
        return "-" + text
    return "+" + text if signed else text
