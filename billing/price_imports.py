"""Price versions in bulk: reading a price file, checking its rows, and comparing
versions with each other.

A file is JSON or CSV with the columns of billing/data/prices.json (``model``,
``input``, ``cached_input``, ``output``, and optionally ``cache_write_5m`` and
``cache_write_1h``) or the field names of Price (``public_model``,
``input_per_1m``, ...), plus ``effective_from``, ``request_fee``, ``is_free`` and
``note``. Cache-write rates left out are 1.25x and 2x the row's input rate
(Anthropic's rule). Rows are numbered from 1, not counting a CSV header, in
errors and previews alike.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from billing import selectors
from billing.models import CACHE_WRITE_PLACES, CACHE_WRITE_PRICE_MAX, PRICE_MAX, Price, input_multiple
from billing.pricing import CACHE_WRITE_1H_MULTIPLE, CACHE_WRITE_5M_MULTIPLE
from oneflow.lib import money
from oneflow.lib.errors import InvalidInput

MAX_FILE_BYTES = 1_000_000
MAX_ROWS = 2000
PRICE_FIELDS = (*Price.RATES, "request_fee")
FIELD_LABELS = (
    "Input / 1M tokens",
    "Cached input (cache read) / 1M tokens",
    "Output / 1M tokens",
    "Cache write, 5 min / 1M tokens",
    "Cache write, 1 h / 1M tokens",
    "Request fee",
)
# Rates a row may leave out, and what they are then: a multiple of its input rate.
CACHE_WRITE_MULTIPLES = {
    "cache_write_5m_per_1m": CACHE_WRITE_5M_MULTIPLE,
    "cache_write_1h_per_1m": CACHE_WRITE_1H_MULTIPLE,
}
COLUMNS = ("public_model", "effective_from", *PRICE_FIELDS, "is_free", "note")
# prices.json's column names.
ALIASES = {
    "model": "public_model",
    "input": "input_per_1m",
    "cached_input": "cached_input_per_1m",
    "output": "output_per_1m",
    "cache_write_5m": "cache_write_5m_per_1m",
    "cache_write_1h": "cache_write_1h_per_1m",
}
# Price's columns: DecimalField(max_digits=16, decimal_places=6), 8 for the cache writes.
PRICE_QUANTUM = Decimal("0.000001")
PRICE_LIMIT = PRICE_MAX  # the admin's bound too: what holds can multiply safely
CACHE_WRITE_QUANTUM = Decimal(1).scaleb(-CACHE_WRITE_PLACES)
TRUE = {"true", "1", "yes", "y"}
FALSE = {"false", "0", "no", "n", ""}


class PriceRowsInvalid(InvalidInput):
    """Every problem of a price file at once, one message per problem, each naming its row."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors), code="invalid_price_rows", param="rows")
        self.errors = errors


# --- Reading a file -----------------------------------------------------------------------


def rows_from_file(*, name: str, content: bytes) -> list[dict[str, Any]]:
    """The rows of a JSON or CSV price file, with column names made canonical.

    JSON is either a list of rows or an object like prices.json, whose
    ``effective_from`` applies to rows that have none. Numbers are read as
    Decimal, never float.
    """
    if len(content) > MAX_FILE_BYTES:
        raise InvalidInput(f"The file is larger than {MAX_FILE_BYTES // 1000} kB.", param="file")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("The file is not UTF-8 text.", param="file") from exc
    is_json = name.lower().endswith(".json") or text.lstrip().startswith(("{", "["))
    rows = _json_rows(text) if is_json else _csv_rows(text)
    if not rows:
        raise InvalidInput("The file has no rows.", param="file")
    if len(rows) > MAX_ROWS:
        raise InvalidInput(f"The file has more than {MAX_ROWS} rows.", param="file")
    return [_canonical(row) if isinstance(row, dict) else row for row in rows]


def _json_rows(text: str) -> list[Any]:
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise InvalidInput(f"The file is not valid JSON: {exc}", param="file") from exc
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("prices"), list):
        default = data.get("effective_from")
        rows = data["prices"]
        if default is not None:
            rows = [{"effective_from": default, **row} if isinstance(row, dict) else row for row in rows]
        return rows
    raise InvalidInput('JSON must be a list of rows or an object with a "prices" list.', param="file")


def _csv_rows(text: str) -> list[Any]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return [row for row in reader if any((value or "").strip() for value in row.values() if isinstance(value, str))]
    except csv.Error as exc:
        raise InvalidInput(f"The file is not valid CSV: {exc}", param="file") from exc


def _canonical(row: dict[Any, Any]) -> dict[str, Any]:
    """Column names as Price names them; Decimals as strings, so rows survive a round trip through JSON."""
    canonical: dict[str, Any] = {}
    for key, value in row.items():
        name = str(key).strip().lower() if key is not None else "(unnamed)"
        canonical[ALIASES.get(name, name)] = str(value) if isinstance(value, Decimal) else value
    return canonical


# --- Checking rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceRow:
    """One checked row: ready to become a Price."""

    number: int
    public_model: str
    effective_from: datetime
    input_per_1m: Decimal
    cached_input_per_1m: Decimal
    cache_write_5m_per_1m: Decimal
    cache_write_1h_per_1m: Decimal
    output_per_1m: Decimal
    request_fee: Decimal
    is_free: bool
    note: str

    def price(self) -> Price:
        return Price(
            public_model=self.public_model,
            effective_from=self.effective_from,
            input_per_1m=self.input_per_1m,
            cached_input_per_1m=self.cached_input_per_1m,
            cache_write_5m_per_1m=self.cache_write_5m_per_1m,
            cache_write_1h_per_1m=self.cache_write_1h_per_1m,
            output_per_1m=self.output_per_1m,
            request_fee=self.request_fee,
            is_free=self.is_free,
            note=self.note,
        )


def price_rows_check(
    *, rows: list[Any], now: datetime, existing: set[tuple[str, datetime]] | frozenset[tuple[str, datetime]]
) -> list[PriceRow]:
    """Checks every row and returns them parsed, or raises PriceRowsInvalid listing every problem.

    Pure: ``existing`` holds the (model, effective_from) of the versions already
    stored. A version may not start in the past (usage already priced would
    change price under it), prices are not negative and fit the column, and no
    two versions of a model start at the same moment.
    """
    errors: list[str] = []
    checked: list[PriceRow] = []
    first_seen: dict[tuple[str, datetime], int] = {}
    for number, row in enumerate(rows, start=1):
        problems: list[str] = []
        parsed = _row(row, number, now, problems)
        if parsed is not None and not problems:
            key = (parsed.public_model, parsed.effective_from)
            if key in existing:
                problems.append(
                    f"a version of {parsed.public_model} from {parsed.effective_from.isoformat()} already exists"
                )
            elif key in first_seen:
                problems.append(f"same model and effective_from as row {first_seen[key]}")
            else:
                first_seen[key] = number
            checked.append(parsed)
        errors += [f"Row {number}: {problem}." for problem in problems]
    if errors:
        raise PriceRowsInvalid(errors)
    return checked


def _row(row: Any, number: int, now: datetime, problems: list[str]) -> PriceRow | None:
    if not isinstance(row, dict):
        problems.append("is not a row of named columns")
        return None
    problems += [f"unknown column {key!r}" for key in row if key not in COLUMNS]
    model = _model(row.get("public_model"), problems)
    when = _moment(row.get("effective_from"), now, problems)
    amounts = {name: _amount(name, row.get(name), problems) for name in PRICE_FIELDS}
    is_free = _flag(row.get("is_free"), problems)
    note = _note(row.get("note"), problems)
    if problems or model is None or when is None:
        return None
    input_per_1m = amounts["input_per_1m"] or money.ZERO
    writes = {
        name: input_multiple(input_per_1m, multiple) if amounts[name] is None else amounts[name]
        for name, multiple in CACHE_WRITE_MULTIPLES.items()
    }
    return PriceRow(
        number=number,
        public_model=model,
        effective_from=when,
        input_per_1m=input_per_1m,
        cached_input_per_1m=amounts["cached_input_per_1m"] or money.ZERO,
        cache_write_5m_per_1m=writes["cache_write_5m_per_1m"] or money.ZERO,
        cache_write_1h_per_1m=writes["cache_write_1h_per_1m"] or money.ZERO,
        output_per_1m=amounts["output_per_1m"] or money.ZERO,
        request_fee=amounts["request_fee"] or money.ZERO,
        is_free=is_free,
        note=note,
    )


def _model(value: Any, problems: list[str]) -> str | None:
    model = value.strip() if isinstance(value, str) else ""
    if not model:
        problems.append("public_model is missing")
    elif len(model) > 200:
        problems.append("public_model is longer than 200 characters")
    return model or None


def _moment(value: Any, now: datetime, problems: list[str]) -> datetime | None:
    text = value.strip() if isinstance(value, str) else ""
    if text.lower() == "now":
        return now
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"effective_from {value!r} is not an ISO date and time (e.g. 2026-01-01T00:00:00Z) or 'now'")
        return None
    if when.tzinfo is None:
        problems.append(f"effective_from {text!r} has no time zone (add Z for UTC)")
        return None
    when = when.astimezone(UTC)
    if when < now:
        problems.append(f"effective_from {text} is in the past")
        return None
    return when


def _amount(name: str, value: Any, problems: list[str]) -> Decimal | None:
    """USD per 1M tokens (per request for request_fee). request_fee may be left out (0),
    and so may the cache-write rates (None: the row's input rate times their multiple)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if name == "request_fee":
            return money.ZERO
        if name not in CACHE_WRITE_MULTIPLES:
            problems.append(f"{name} is missing")
        return None
    writes = name in CACHE_WRITE_MULTIPLES
    limit = CACHE_WRITE_PRICE_MAX if writes else PRICE_LIMIT
    quantum, places = (CACHE_WRITE_QUANTUM, CACHE_WRITE_PLACES) if writes else (PRICE_QUANTUM, 6)
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise TypeError
        amount = money.to_decimal(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, InvalidOperation):
        problems.append(f"{name} {value!r} is not a decimal number")
        return None
    if not amount.is_finite():
        problems.append(f"{name} {value!r} is not a decimal number")
    elif amount < 0:
        problems.append(f"{name} must not be negative (got {amount})")
    elif amount > limit:
        problems.append(f"{name} {amount} is too large (at most {limit})")
    elif amount != amount.quantize(quantum, context=money.CONTEXT):
        problems.append(f"{name} {amount} has more than {places} decimal places")
    else:
        return amount
    return None


def _flag(value: Any, problems: list[str]) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text not in TRUE | FALSE:
        problems.append(f"is_free {value!r} is not true or false")
    return text in TRUE


def _note(value: Any, problems: list[str]) -> str:
    note = "" if value is None else str(value).strip()
    if len(note) > 200:
        problems.append("note is longer than 200 characters")
    return note


def price_models() -> list[str]:
    """Every public model that has at least one price version, by name."""
    return sorted(set(Price.objects.values_list("public_model", flat=True)))


def existing_versions(*, models: set[str]) -> set[tuple[str, datetime]]:
    return set(Price.objects.filter(public_model__in=models).values_list("public_model", "effective_from"))


def row_models(rows: list[Any]) -> set[str]:
    return {
        row["public_model"].strip()
        for row in rows
        if isinstance(row, dict) and isinstance(row.get("public_model"), str)
    }


# --- Comparing --------------------------------------------------------------------------


def price_text(value: Decimal) -> str:
    """A USD price as listed: at least 2 decimals, more when it has them.

    Prices are not rounded for display like credits are: 0.075 shown as 0.08
    would misstate the price being compared.
    """
    exponent = value.normalize().as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{value:.{places}f}"


@dataclass(frozen=True)
class Change:
    """One price field from one version to the next; ``old`` None when there was no previous version."""

    old: Decimal | None
    new: Decimal

    @property
    def changed(self) -> bool:
        return self.old is not None and self.old != self.new

    @property
    def percent(self) -> Decimal | None:
        if self.old is None or self.old == 0:
            return None
        ratio = money.CONTEXT.divide((self.new - self.old) * 100, self.old)
        return ratio.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP, context=money.CONTEXT)

    @property
    def percent_text(self) -> str:
        if self.old is None:
            return ""
        if not self.changed:
            return "unchanged"
        percent = self.percent
        return "from 0" if percent is None else f"{percent:+}%"

    @property
    def old_text(self) -> str:
        return "" if self.old is None else price_text(self.old)

    @property
    def new_text(self) -> str:
        return price_text(self.new)


def _changes(old: Price | None, new: Price | PriceRow) -> list[Change]:
    return [Change(None if old is None else getattr(old, name), getattr(new, name)) for name in PRICE_FIELDS]


@dataclass(frozen=True)
class RowPreview:
    """An import row next to the version in force now for its model (None: a new model)."""

    row: PriceRow
    current: Price | None
    changes: list[Change]


def import_preview(*, rows: list[Any], now: datetime) -> list[RowPreview]:
    """Checks the rows (raising PriceRowsInvalid) and compares each with the version in force now."""
    checked = price_rows_check(rows=rows, now=now, existing=existing_versions(models=row_models(rows)))
    book = selectors.price_book(models={row.public_model for row in checked})
    previews = []
    for row in checked:
        current = book.at(row.public_model, now)
        previews.append(RowPreview(row=row, current=current, changes=_changes(current, row)))
    return previews


@dataclass(frozen=True)
class Version:
    """A stored version next to the one before it."""

    price: Price
    status: str  # "past", "in force" or "scheduled"
    changes: list[Change]
    free_changed: bool


def versions_compare(*, public_model: str, now: datetime) -> list[Version]:
    """Every version of a model, oldest first, each with its changes from the previous one."""
    prices = list(Price.objects.filter(public_model=public_model).order_by("effective_from"))
    in_force = next((price for price in reversed(prices) if price.effective_from <= now), None)
    versions = []
    previous: Price | None = None
    for price in prices:
        status = "in force" if price == in_force else "scheduled" if price.effective_from > now else "past"
        free_changed = previous is not None and previous.is_free != price.is_free
        versions.append(
            Version(price=price, status=status, changes=_changes(previous, price), free_changed=free_changed)
        )
        previous = price
    return versions


def versions_by_field(versions: list[Version]) -> list[tuple[str, list[Change]]]:
    """The same comparison turned on its side, one line per price field, for a table with a column per version."""
    return [(label, [version.changes[index] for version in versions]) for index, label in enumerate(FIELD_LABELS)]
