"""An experiment table for ``orchestrator lift``: ``read_experiment`` reads the columns a lift analysis needs
from a CSV file (arm, metrics, an optional covariate and segment, the features of an uplift view) and checks
them, so that a wrong input is told by column, line and value (``InputError``) rather than as a wrong number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrator.errors import InvalidInputError


class InputError(InvalidInputError, ValueError):
    """The experiment table cannot be analysed as asked; the message names the column and line."""


@dataclass(frozen=True)
class ExperimentTable:
    """The checked columns of an experiment table, aligned by row: ``arm`` (object array of the arm
    values), each metric and the covariate as floats, the segment values (object array) when asked, and
    the features: a column of numbers (or true/false) as floats with NaN where empty, any other column as
    text (object array, None where empty)."""

    rows: int
    arm: np.ndarray
    metrics: dict[str, np.ndarray]
    covariate: np.ndarray | None
    segment: np.ndarray | None
    features: dict[str, np.ndarray] = field(default_factory=dict)


def _numeric(column: str, values: list[str | None], role: str) -> np.ndarray:
    """Parse a column of strings as finite floats; the first bad cell is named by line (header = 1)."""
    out = np.empty(len(values), dtype=np.float64)
    for i, raw in enumerate(values):
        text = "" if raw is None else raw.strip()
        try:
            value = float(text)
        except ValueError:
            shown = "an empty value" if not text else f"{raw!r}, not a number"
            raise InputError(f"{role} column {column!r} has {shown} at line {i + 2}") from None
        if not math.isfinite(value):
            raise InputError(f"{role} column {column!r} has a non-finite value {raw!r} at line {i + 2}")
        out[i] = value
    return out


def read_experiment(
    path: Path,
    arm: str,
    control: str,
    metrics: list[str],
    covariate: str | None,
    by: str | None,
    features: Sequence[str] = (),
) -> ExperimentTable:
    """Read the needed columns of a CSV experiment table and check them (``InputError`` when wrong)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if not path.exists():
        raise InputError(f"{path}: no such file")
    wanted = list(dict.fromkeys([arm, *metrics, *([covariate] if covariate else []), *([by] if by else [])]))
    try:
        with pcsv.open_csv(path) as reader:
            header = reader.schema.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read it as CSV: {exc}") from None
    missing = [name for name in dict.fromkeys([*wanted, *features]) if name not in header]
    if missing:
        names = ", ".join(map(repr, header))
        raise InputError(f"{path}: no column {', '.join(map(repr, missing))}; the columns are {names}")
    try:
        table = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(
                include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string())
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: cannot read it as CSV: {exc}") from None
    columns = {name: table.column(name).to_pylist() for name in wanted}
    arms = columns[arm]
    for i, value in enumerate(arms):
        if value is None or not value.strip():
            raise InputError(f"arm column {arm!r} is empty at line {i + 2}")
    arm_values = np.array(arms, dtype=object)
    if not (arm_values == control).any():
        found = sorted(set(arms))
        shown = ", ".join(map(repr, found[:20])) + (" ..." if len(found) > 20 else "")
        raise InputError(
            f"control value {control!r} does not occur in column {arm!r}; its values are {shown}"
        )
    if len(set(arms)) < 2:
        raise InputError(f"column {arm!r} has only the control value {control!r}: nothing to compare")
    parsed = {name: _numeric(name, columns[name], "metric") for name in metrics}
    cov = _numeric(covariate, columns[covariate], "covariate") if covariate else None
    segment = np.array(columns[by], dtype=object) if by else None
    return ExperimentTable(
        table.num_rows, arm_values, parsed, cov, segment, _features(path, list(dict.fromkeys(features)))
    )


def _features(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The feature columns, each typed as the CSV reader infers it: numbers and true/false as floats (NaN
    where empty), anything else as text (None where empty)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if not names:
        return {}
    try:
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(include_columns=names))
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: cannot read it as CSV: {exc}") from None
    out: dict[str, np.ndarray] = {}
    for name in names:
        column = table.column(name)
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            out[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            out[name] = np.array(column.cast(pa.string()).to_pylist(), dtype=object)
    return out
