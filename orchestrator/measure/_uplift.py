"""Who a message moves: a two-model (T-learner) uplift estimate, its Qini curve, Qini coefficient and AUUC,
and the four quadrants (persuadables, sure things, lost causes, sleeping dogs). Pure functions over numpy
arrays; they read no store.

This is a *model estimate*: which customers the message moves is predicted from features known before
entry, not measured. Only the arms' totals and the observed rates inside each group are measured.

The learner (``two_model_uplift``): one classifier per arm, fitted on that arm's rows, predicts each row's
chance of the outcome with the message (``p_treated``) and without it (``p_control``); the predicted uplift
is their difference. The default classifier is scikit-learn's ``LogisticRegression`` (L2, C = 1) on
standardised features; ``boosting`` uses ``HistGradientBoostingClassifier`` (depth 3, 100 trees, learning
rate 0.05) instead. Every row is scored out of fold (cross-fitting): the rows are split into ``folds`` folds
stratified by arm and outcome (rows of one customer, when told, in one fold), and a row's predictions come
from the two models fitted on the other folds, so the Qini curve is never measured on rows a model was
trained on. The models are fitted on one thread.

Features (``encode_features``): a numeric column is used as it is, its missing values replaced by the
column's median with a ``(missing)`` indicator column; a text column is one-hot encoded, one column for
each value held by at least ``MIN_LEVEL_ROWS`` rows (the ``MAX_LEVELS`` most frequent), the rarer values
pooled into ``(other)`` and missing values into ``(missing)``. A column with one value only is left out.

The curves and figures, with rows sorted by predicted uplift, highest first, and evaluated at each distinct
predicted value (ties enter together); ``N(k)``, ``N_T(k)``, ``N_C(k)`` are the rows, treated rows and
control rows among the first ``k``, ``Y_T(k)``, ``Y_C(k)`` their outcomes (a ratio with a zero denominator
counts as 0), and the curve starts at (0, 0):

- Qini curve: ``Q(k) = Y_T(k) - Y_C(k) * N_T(k) / N_C(k)``, the incremental outcomes among the targeted
  rows, the control's outcomes scaled to the treated count;
- uplift curve: ``U(k) = (Y_T(k) / N_T(k) - Y_C(k) / N_C(k)) * N(k)``;
- the random line runs from (0, 0) to the curve's end (``Q(N)``, the same for every ordering);
- Qini coefficient: ``(A(Q) - A(random)) / (A(Q*) - A(random))`` with ``A`` the trapezoid area over
  ``k`` and ``Q*`` the Qini curve of the perfect ordering (treated responders first, control responders
  last: scores ``y * t - y * (1 - t)``); 1 is the best possible ordering, 0 is no better than random;
- AUUC: the same normalisation of the uplift curve, with the perfect ordering of scores
  ``2 * (y == t) + s`` where ``s = y`` if control responders outnumber treated non-responders, else
  ``s = t``.

These are scikit-uplift's ``qini_curve``, ``uplift_curve``, ``qini_auc_score`` (``negative_effect=True``)
and ``uplift_auc_score`` (0.5.1), written here over numpy; a test computes both on the same predictions.

The quadrants: with ``threshold`` the observed outcome rate over both arms, a row responds with the message
when ``p_treated >= threshold`` and without it when ``p_control >= threshold``: persuadables respond only
with it, sure things either way, lost causes in neither case, sleeping dogs only without it.

scikit-learn is the optional extra ``orchestrator[uplift]``, imported only when a model is fitted; without it
the estimate raises ``UpliftSetupError`` naming the extra.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.errors import SetupError
from orchestrator.measure._experiment import InputError
from orchestrator.measure._numbers import finite

LOGISTIC, BOOSTING = "logistic", "boosting"
LEARNERS = (LOGISTIC, BOOSTING)
DEFAULT_LEARNER = LOGISTIC
DEFAULT_FOLDS = 5
MIN_ROWS_PER_ARM = 50
"""Fewer rows than this in an arm: no uplift model (the estimate would be noise)."""
MIN_LEVEL_ROWS = 10
"""A text value held by fewer rows than this is pooled into ``(other)``."""
MAX_LEVELS = 30
"""At most this many values of a text feature get a column of their own."""
CURVE_POINTS = 101
"""The Qini and uplift curves are reported at 0%, 1%, ..., 100% of the rows targeted."""

LEARNER_WORDS = {
    LOGISTIC: "logistic regression per arm (scikit-learn LogisticRegression, L2, C = 1, standardised "
    "features)",
    BOOSTING: "gradient-boosted trees per arm (scikit-learn HistGradientBoostingClassifier, depth 3, "
    "100 trees, learning rate 0.05)",
}
MODEL_ESTIMATE = (
    "model estimate: predicted by a two-model learner from features known before the message, not measured"
)

PERSUADABLES, SURE_THINGS, LOST_CAUSES, SLEEPING_DOGS = (
    "persuadables",
    "sure things",
    "lost causes",
    "sleeping dogs",
)
QUADRANT_WORDS = {
    PERSUADABLES: "respond only with the message",
    SURE_THINGS: "respond either way",
    LOST_CAUSES: "respond in neither case",
    SLEEPING_DOGS: "respond only without the message",
}


class UpliftSetupError(SetupError):
    """The optional extra the uplift view needs (scikit-learn) is not installed."""


# ------------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureInfo:
    """How one input feature was used: ``kind`` number or text, the encoded ``columns`` it became (0 when
    left out as constant), its missing values and, for text, its distinct values."""

    name: str
    kind: str
    columns: int
    missing: int
    levels: int | None = None

    @property
    def used(self) -> bool:
        return self.columns > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "columns": self.columns,
            "missing": self.missing,
            "levels": self.levels,
            "used": self.used,
        }


@dataclass(frozen=True)
class EncodedFeatures:
    """The design matrix (rows x encoded columns, float64), the encoded columns' names and how each input
    feature was used."""

    matrix: np.ndarray
    columns: tuple[str, ...]
    features: tuple[FeatureInfo, ...]


def _missing_text(values: np.ndarray) -> np.ndarray:
    return np.fromiter(
        (
            v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())
            for v in values
        ),
        bool,
        len(values),
    )


def _numeric_column(name: str, values: np.ndarray) -> tuple[list[np.ndarray], list[str], FeatureInfo]:
    numbers = values.astype(np.float64)
    if not np.isfinite(numbers[~np.isnan(numbers)]).all():
        raise InputError(f"feature {name!r} has an infinite value")
    missing = np.isnan(numbers)
    present = numbers[~missing]
    n_missing = int(missing.sum())
    if present.size == 0 or (np.unique(present).size < 2 and n_missing == 0):
        return [], [], FeatureInfo(name, "number", 0, n_missing)
    filled = np.where(missing, float(np.median(present)), numbers)
    blocks, names = [filled], [name]
    if n_missing:
        blocks.append(missing.astype(np.float64))
        names.append(f"{name} (missing)")
    if np.unique(present).size < 2:
        blocks, names = blocks[1:], names[1:]  # one value and some missing: only missingness tells apart
    return blocks, names, FeatureInfo(name, "number", len(blocks), n_missing)


def _text_column(name: str, values: np.ndarray) -> tuple[list[np.ndarray], list[str], FeatureInfo]:
    missing = _missing_text(values)
    text = np.where(missing, "", values.astype(str))
    levels, inverse, counts = np.unique(text[~missing], return_inverse=True, return_counts=True)
    codes = np.full(len(values), -1)
    codes[~missing] = inverse
    order = np.lexsort((levels, -counts))  # most frequent first, then by value
    kept = [int(i) for i in order[:MAX_LEVELS] if counts[i] >= MIN_LEVEL_ROWS]
    blocks: list[np.ndarray] = [(codes == i).astype(np.float64) for i in kept]
    names = [f"{name}={levels[i]}" for i in kept]
    other = ~missing & ~np.isin(codes, kept)
    if other.any():
        blocks.append(other.astype(np.float64))
        names.append(f"{name}=(other)")
    if missing.any():
        blocks.append(missing.astype(np.float64))
        names.append(f"{name}=(missing)")
    info_missing, distinct = int(missing.sum()), int(levels.size)
    if len(blocks) < 2:  # every row in one group: nothing to tell customers apart by
        return [], [], FeatureInfo(name, "text", 0, info_missing, distinct)
    return blocks, names, FeatureInfo(name, "text", len(blocks), info_missing, distinct)


def encode_features(columns: Mapping[str, np.ndarray | Sequence[Any]]) -> EncodedFeatures:
    """The design matrix of ``columns`` (name -> values, aligned by row): numeric, boolean and integer arrays
    are numbers (NaN missing); object arrays are text (None, NaN or blank missing); see the module
    docstring for the encoding. ``InputError`` when there are no features, their lengths differ, or every
    one is constant."""
    if not columns:
        raise InputError("the uplift view needs at least one feature known before entry")
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    lengths = {arr.shape[0] for arr in arrays.values()}
    if len(lengths) != 1 or any(arr.ndim != 1 for arr in arrays.values()):
        raise InputError("the features must be one-dimensional columns of the same length")
    n = lengths.pop()
    blocks: list[np.ndarray] = []
    names: list[str] = []
    infos: list[FeatureInfo] = []
    for name, arr in arrays.items():
        if arr.dtype.kind in "biuf":
            b, c, info = _numeric_column(name, arr)
        else:
            b, c, info = _text_column(name, arr.astype(object))
        blocks += b
        names += c
        infos.append(info)
    if not blocks:
        shown = ", ".join(repr(name) for name in arrays)
        raise InputError(f"every feature ({shown}) has a single value: nothing tells the customers apart")
    matrix = np.column_stack(blocks) if n else np.empty((0, len(blocks)))
    return EncodedFeatures(matrix.astype(np.float64, copy=False), tuple(names), tuple(infos))


# --------------------------------------------------------------------------------------------- model


def _sklearn() -> dict[str, Any]:
    """The scikit-learn classes the learner uses, or an ``UpliftSetupError`` naming the extra."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise UpliftSetupError(
            "the uplift view needs the optional extra 'uplift' (scikit-learn is not installed): "
            "pip install 'orchestrator[uplift]'"
        ) from None
    return {
        "boosting": HistGradientBoostingClassifier,
        "convergence": ConvergenceWarning,
        "logistic": LogisticRegression,
        "folds": StratifiedKFold,
        "group folds": StratifiedGroupKFold,
        "pipeline": make_pipeline,
        "scaler": StandardScaler,
        "threads": threadpool_limits,
    }


def _classifier(sk: Mapping[str, Any], learner: str, seed: int) -> Any:
    if learner == LOGISTIC:
        return sk["pipeline"](sk["scaler"](), sk["logistic"](C=1.0, max_iter=1000))
    return sk["boosting"](
        max_depth=3,
        learning_rate=0.05,
        max_iter=100,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )


def check_uplift_input(
    outcome: np.ndarray,
    treated: np.ndarray,
    names: tuple[str, str] = ("treated", "control"),
    *,
    folds: int = DEFAULT_FOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """``outcome`` and ``treated`` as bool arrays, or ``InputError`` saying why no uplift model can be fitted
    on them: not 0/1, of different lengths, a constant outcome, or too few rows (or too few of either
    outcome for ``folds`` folds) in an arm. ``names`` name the treated and control arms in messages."""
    y, t = np.asarray(outcome), np.asarray(treated)
    if y.ndim != 1 or t.shape != y.shape:
        raise InputError("the outcome and the arm flags must be one-dimensional columns of the same length")
    if y.dtype != np.bool_ and not (y.size and y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all()):
        raise InputError("the uplift view needs a 0/1 outcome")
    if t.dtype != np.bool_ and not np.isin(t, (0, 1)).all():
        raise InputError("the arm flags must be 0/1")
    y, t = y.astype(bool), t.astype(bool)
    if y.size and (y.all() or not y.any()):
        raise InputError(
            f"every row has the same outcome ({int(y[0])}): an uplift model needs rows with both outcomes"
        )
    for name, rows in ((names[0], t), (names[1], ~t)):
        count = int(rows.sum())
        if count < MIN_ROWS_PER_ARM:
            raise InputError(
                f"too few rows for an uplift model: {name} has {count}, each arm needs at least "
                f"{MIN_ROWS_PER_ARM}"
            )
        ones = int(y[rows].sum())
        if min(ones, count - ones) < folds:
            raise InputError(
                f"{name} has {ones} rows with outcome 1 and {count - ones} with 0: each arm needs at least "
                f"{folds} of each for {folds}-fold cross-fitting"
            )
    return y, t


def two_model_uplift(
    matrix: np.ndarray,
    outcome: np.ndarray,
    treated: np.ndarray,
    *,
    learner: str = DEFAULT_LEARNER,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold ``(p_treated, p_control)`` for every row: a classifier per arm on the other folds' rows
    of that arm (see the module docstring). ``outcome`` and ``treated`` are bool (see
    ``check_uplift_input``). Rows with the same ``groups`` value (the entries of one customer) are kept in
    one fold, so a model never scores a customer it saw in training; ``InputError`` when that leaves a
    fold's arm with one outcome only."""
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {learner!r}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    sk = _sklearn()
    y, t = np.asarray(outcome, bool), np.asarray(treated, bool)
    x = np.asarray(matrix, np.float64)
    p_treated, p_control = np.empty(len(y)), np.empty(len(y))
    strata = 2 * t.astype(int) + y.astype(int)
    grouped = groups is not None and np.unique(groups).size < len(y)
    splitter = sk["group folds" if grouped else "folds"](n_splits=folds, shuffle=True, random_state=seed)
    # One thread: on tables of this size, OpenMP's and BLAS's threads cost more than they save (on a busy
    # machine, ten times more); the figures are the same.
    with warnings.catch_warnings(), sk["threads"](limits=1):
        warnings.simplefilter("ignore", sk["convergence"])
        for train, test in splitter.split(x, strata, groups if grouped else None):
            for arm, out in ((True, p_treated), (False, p_control)):
                rows = train[t[train] == arm]
                if np.unique(y[rows]).size < 2:
                    raise InputError(
                        "the rows are too few, or too few customers have each outcome, to fit a model on "
                        f"every {folds}-fold split"
                    )
                model = _classifier(sk, learner, seed).fit(x[rows], y[rows])
                out[test] = model.predict_proba(x[test])[:, list(model.classes_).index(True)]
    return p_treated, p_control


# -------------------------------------------------------------------------------------------- curves

Curve = tuple[np.ndarray, np.ndarray]
"""A curve's points: rows targeted (from 0) and the curve's value there."""


def _cumulative(
    outcome: np.ndarray, score: np.ndarray, treated: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by ``score``, highest first; at each distinct score: N, N_T, N_C, Y_T, Y_C."""
    order = np.argsort(score, kind="mergesort")[::-1]
    s = np.asarray(score)[order]
    y = np.asarray(outcome, np.float64)[order]
    t = np.asarray(treated, np.float64)[order]
    cuts = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    n_t = np.cumsum(t)[cuts]
    y_t = np.cumsum(y * t)[cuts]
    y_c = np.cumsum(y * (1.0 - t))[cuts]
    n_all = (cuts + 1).astype(np.float64)
    return n_all, n_t, n_all - n_t, y_t, y_c


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def qini_curve(outcome: np.ndarray, score: np.ndarray, treated: np.ndarray) -> Curve:
    """The Qini curve: rows targeted (from 0) and ``Q(k) = Y_T(k) - Y_C(k) * N_T(k) / N_C(k)``."""
    n_all, n_t, n_c, y_t, y_c = _cumulative(outcome, score, treated)
    return np.r_[0.0, n_all], np.r_[0.0, y_t - y_c * _ratio(n_t, n_c)]


def uplift_curve(outcome: np.ndarray, score: np.ndarray, treated: np.ndarray) -> Curve:
    """The uplift curve: rows targeted (from 0) and ``U(k) = (Y_T/N_T - Y_C/N_C) * N`` among them."""
    n_all, n_t, n_c, y_t, y_c = _cumulative(outcome, score, treated)
    return np.r_[0.0, n_all], np.r_[0.0, (_ratio(y_t, n_t) - _ratio(y_c, n_c)) * n_all]


def _area(x: np.ndarray, y: np.ndarray) -> float:
    """The trapezoid area under ``y`` over ``x`` (increasing)."""
    return float((np.diff(x) * (y[1:] + y[:-1]) / 2.0).sum())


def _normalised(
    actual: tuple[np.ndarray, np.ndarray], perfect: tuple[np.ndarray, np.ndarray]
) -> float | None:
    """(area of the curve - area of the random line) / (area of the perfect curve - area of the random
    line); None when the perfect curve is no better than random (the ratio does not exist)."""
    x_end, y_end = perfect[0][-1], perfect[1][-1]
    baseline = _area(np.array([0.0, x_end]), np.array([0.0, y_end]))
    best = _area(*perfect) - baseline
    if best == 0.0:
        return None
    return finite((_area(*actual) - baseline) / best)


def qini_coefficient(outcome: np.ndarray, score: np.ndarray, treated: np.ndarray) -> float | None:
    """The Qini coefficient of ``score`` (module docstring): scikit-uplift's ``qini_auc_score``."""
    y = np.asarray(outcome, np.float64)
    t = np.asarray(treated, np.float64)
    return _normalised(qini_curve(y, score, t), qini_curve(y, y * t - y * (1.0 - t), t))


def auuc(outcome: np.ndarray, score: np.ndarray, treated: np.ndarray) -> float | None:
    """The normalised area under the uplift curve (module docstring): scikit-uplift's ``uplift_auc_score``."""
    y = np.asarray(outcome, np.float64)
    t = np.asarray(treated, np.float64)
    control_responders = int(((y == 1) & (t == 0)).sum())
    treated_non_responders = int(((y == 0) & (t == 1)).sum())
    summand = y if control_responders > treated_non_responders else t
    perfect = 2.0 * (y == t) + summand
    return _normalised(uplift_curve(y, score, t), uplift_curve(y, perfect, t))


# ----------------------------------------------------------------------------------------- quadrants


@dataclass(frozen=True)
class Quadrant:
    """One quadrant: its rows, their share, the observed outcome rate per arm inside it (None for an arm
    with no row here) and the mean predicted uplift."""

    name: str
    n: int
    share: float
    treated_n: int
    treated_rate: float | None
    control_n: int
    control_rate: float | None
    predicted_uplift: float | None

    @property
    def observed_difference(self) -> float | None:
        if self.treated_rate is None or self.control_rate is None:
            return None
        return self.treated_rate - self.control_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule": QUADRANT_WORDS[self.name],
            "n": self.n,
            "share": self.share,
            "treated_n": self.treated_n,
            "treated_rate": self.treated_rate,
            "control_n": self.control_n,
            "control_rate": self.control_rate,
            "observed_difference": self.observed_difference,
            "predicted_uplift": self.predicted_uplift,
        }


def quadrant_of(p_treated: np.ndarray, p_control: np.ndarray, threshold: float) -> np.ndarray:
    """Each row's quadrant name (object array): responds with the message when ``p_treated >= threshold``,
    without it when ``p_control >= threshold``."""
    with_message = np.asarray(p_treated) >= threshold
    without = np.asarray(p_control) >= threshold
    out = np.empty(with_message.shape, dtype=object)
    out[with_message & ~without] = PERSUADABLES
    out[with_message & without] = SURE_THINGS
    out[~with_message & ~without] = LOST_CAUSES
    out[~with_message & without] = SLEEPING_DOGS
    return out


def quadrants(
    p_treated: np.ndarray, p_control: np.ndarray, outcome: np.ndarray, treated: np.ndarray, threshold: float
) -> tuple[Quadrant, ...]:
    """The four quadrants in order (persuadables, sure things, lost causes, sleeping dogs), with counts,
    shares and the observed rates per arm inside each."""
    names = quadrant_of(p_treated, p_control, threshold)
    y, t = np.asarray(outcome, bool), np.asarray(treated, bool)
    uplift = np.asarray(p_treated) - np.asarray(p_control)
    n = len(y)
    out = []
    for name in (PERSUADABLES, SURE_THINGS, LOST_CAUSES, SLEEPING_DOGS):
        rows = names == name
        in_t, in_c = rows & t, rows & ~t
        n_t, n_c = int(in_t.sum()), int(in_c.sum())
        out.append(
            Quadrant(
                name=name,
                n=int(rows.sum()),
                share=float(rows.sum() / n) if n else 0.0,
                treated_n=n_t,
                treated_rate=float(y[in_t].mean()) if n_t else None,
                control_n=n_c,
                control_rate=float(y[in_c].mean()) if n_c else None,
                predicted_uplift=float(uplift[rows].mean()) if rows.any() else None,
            )
        )
    return tuple(out)


# -------------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class CurvePoint:
    """The curves at a share of the rows targeted (highest predicted uplift first): the Qini curve's
    incremental outcomes, the uplift curve and the random line (both interpolated between distinct
    predictions)."""

    share: float
    targeted: float
    qini: float
    uplift: float
    random: float

    def to_dict(self) -> dict[str, float]:
        return {
            "share": self.share,
            "targeted": self.targeted,
            "qini": self.qini,
            "uplift": self.uplift,
            "random": self.random,
        }


@dataclass(frozen=True)
class UpliftResult:
    """The uplift view of one treated arm against the control on one 0/1 outcome.

    ``p_treated``, ``p_control``, ``outcome`` and ``treated`` are the rows the figures were computed on
    (out-of-fold predictions), so anyone can recompute them; they are not part of ``to_dict``."""

    metric: str
    treatment: str
    control: str
    learner: str
    folds: int
    features: tuple[FeatureInfo, ...]
    encoded_columns: int
    treated_n: int
    control_n: int
    treated_rate: float
    control_rate: float
    qini: float | None
    auuc: float | None
    threshold: float
    curve: tuple[CurvePoint, ...]
    quadrants: tuple[Quadrant, ...]
    p_treated: np.ndarray = field(repr=False, compare=False)
    p_control: np.ndarray = field(repr=False, compare=False)
    outcome: np.ndarray = field(repr=False, compare=False)
    treated: np.ndarray = field(repr=False, compare=False)

    @property
    def uplift(self) -> np.ndarray:
        """The predicted uplift of every row: ``p_treated - p_control``."""
        return self.p_treated - self.p_control

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "arm": self.treatment,
            "control": self.control,
            "estimate": MODEL_ESTIMATE,
            "learner": {"name": self.learner, "words": LEARNER_WORDS[self.learner], "folds": self.folds},
            "features": [f.to_dict() for f in self.features],
            "encoded_columns": self.encoded_columns,
            "treated_n": self.treated_n,
            "control_n": self.control_n,
            "treated_rate": self.treated_rate,
            "control_rate": self.control_rate,
            "qini_coefficient": self.qini,
            "auuc": self.auuc,
            "quadrant_threshold": self.threshold,
            "quadrants": [q.to_dict() for q in self.quadrants],
            "curve": [p.to_dict() for p in self.curve],
        }


def _curve_points(outcome: np.ndarray, score: np.ndarray, treated: np.ndarray) -> tuple[CurvePoint, ...]:
    qx, qy = qini_curve(outcome, score, treated)
    ux, uy = uplift_curve(outcome, score, treated)
    n = float(len(outcome))
    shares = np.linspace(0.0, 1.0, CURVE_POINTS)
    targeted = shares * n
    q = np.interp(targeted, qx, qy)
    u = np.interp(targeted, ux, uy)
    end = float(qy[-1])
    return tuple(
        CurvePoint(float(s), float(k), float(qv), float(uv), float(s) * end)
        for s, k, qv, uv in zip(shares, targeted, q, u, strict=True)
    )


def uplift_estimate(
    features: Mapping[str, np.ndarray | Sequence[Any]],
    outcome: np.ndarray,
    treated: np.ndarray,
    *,
    metric: str,
    treatment: str,
    control: str,
    learner: str = DEFAULT_LEARNER,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> UpliftResult:
    """The uplift view of ``treatment`` against ``control`` on the 0/1 ``outcome``, from ``features`` (name
    -> column, aligned with the rows): predictions out of fold, curves, Qini coefficient, AUUC, quadrants.
    ``groups`` (the customer of each row) keeps the rows of one customer in one fold.

    ``InputError`` when the rows cannot support a model (see ``check_uplift_input`` and
    ``encode_features``); ``UpliftSetupError`` when scikit-learn is not installed."""
    y, t = check_uplift_input(outcome, treated, (treatment, control), folds=folds)
    encoded = encode_features(features)
    if encoded.matrix.shape[0] != len(y):
        raise InputError("the features and the outcome differ in length")
    p_t, p_c = two_model_uplift(encoded.matrix, y, t, learner=learner, folds=folds, seed=seed, groups=groups)
    score = p_t - p_c
    threshold = float(y.mean())
    return UpliftResult(
        metric=metric,
        treatment=treatment,
        control=control,
        learner=learner,
        folds=folds,
        features=encoded.features,
        encoded_columns=len(encoded.columns),
        treated_n=int(t.sum()),
        control_n=int((~t).sum()),
        treated_rate=float(y[t].mean()),
        control_rate=float(y[~t].mean()),
        qini=qini_coefficient(y, score, t),
        auuc=auuc(y, score, t),
        threshold=threshold,
        curve=_curve_points(y, score, t),
        quadrants=quadrants(p_t, p_c, y, t, threshold),
        p_treated=p_t,
        p_control=p_c,
        outcome=y,
        treated=t,
    )


@dataclass(frozen=True)
class UpliftView:
    """The uplift section of a report: one result per treated arm and outcome, and notes (an outcome left
    out because it is not 0/1, a journey with too few entries...)."""

    results: tuple[UpliftResult, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": MODEL_ESTIMATE,
            "comparisons": [r.to_dict() for r in self.results],
            "notes": list(self.notes),
        }
