"""Outliers and smoothing on a report's time series (a list of numbers, None where a point
has no value, e.g. a CTOR with nobody). Pure.

* **z-score** (``zscore``): a point is an outlier when it lies more than ``threshold``
  (default 3) population standard deviations from the mean of the ``window`` (default 7)
  points before it — trailing, so a spike cannot hide itself in its own statistics; a point
  with fewer than 3 points before it is never flagged; when those points are all equal, any
  other value is an outlier.
* **IQR** (``iqr``): Tukey's fences over the whole series: outside ``[Q1 - k·IQR, Q3 +
  k·IQR]`` with ``k`` = ``threshold`` (default 1.5), quartiles by ``statistics.quantiles``
  (``method="inclusive"``); fewer than 4 points: none flagged.
* **moving average** (``ma``): the mean of the ``smooth_window`` (default 7) points ending
  at each point (fewer at the start), Nones left out.
* **exponential smoothing** (``ema``): ``s = alpha·x + (1 - alpha)·s`` from the first
  value (alpha default 0.3); a None point carries the last smoothed value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .query import QueryError

OUTLIER_METHODS = ("zscore", "iqr")
SMOOTHING = ("ma", "ema")
DEFAULT_THRESHOLD = {"zscore": 3.0, "iqr": 1.5}
MIN_PRIOR = 3  # points before a point for its z-score
MAX_WINDOW = 365

Values = Sequence[float | None]


@dataclass(frozen=True)
class SeriesOptions:
    outliers: str | None = None
    threshold: float | None = None  # None: DEFAULT_THRESHOLD of the method
    window: int = 7
    smooth: str | None = None
    smooth_window: int = 7
    alpha: float = 0.3


def zscore_flags(values: Values, window: int = 7, threshold: float = 3.0) -> list[bool]:
    flags = []
    for i, value in enumerate(values):
        prior = [v for v in values[max(0, i - window) : i] if v is not None]
        if value is None or len(prior) < MIN_PRIOR:
            flags.append(False)
            continue
        mean = statistics.fmean(prior)
        spread = statistics.pstdev(prior, mean)
        if spread == 0:
            flags.append(value != mean)
        else:
            flags.append(abs(value - mean) / spread > threshold)
    return flags


def iqr_flags(values: Values, k: float = 1.5) -> list[bool]:
    present = [v for v in values if v is not None]
    if len(present) < 4:
        return [False] * len(values)
    q1, _, q3 = statistics.quantiles(present, n=4, method="inclusive")
    low, high = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    return [v is not None and not low <= v <= high for v in values]


def moving_average(values: Values, window: int = 7) -> list[float | None]:
    out: list[float | None] = []
    for i in range(len(values)):
        present = [v for v in values[max(0, i - window + 1) : i + 1] if v is not None]
        out.append(statistics.fmean(present) if present else None)
    return out


def exponential_smoothing(values: Values, alpha: float = 0.3) -> list[float | None]:
    out: list[float | None] = []
    level: float | None = None
    for value in values:
        if value is not None:
            level = value if level is None else alpha * value + (1 - alpha) * level
        out.append(level)
    return out


def flags(values: Values, options: SeriesOptions) -> list[bool]:
    """The outlier flags ``options`` ask for (all False without a method)."""
    if options.outliers is None:
        return [False] * len(values)
    threshold = options.threshold or DEFAULT_THRESHOLD[options.outliers]
    if options.outliers == "zscore":
        return zscore_flags(values, options.window, threshold)
    return iqr_flags(values, threshold)


def smoothed(values: Values, options: SeriesOptions) -> list[float | None] | None:
    """The smoothed series ``options`` ask for, None without a method."""
    if options.smooth == "ma":
        return moving_average(values, options.smooth_window)
    if options.smooth == "ema":
        return exponential_smoothing(values, options.alpha)
    return None


def parse_options(params: Mapping[str, str]) -> SeriesOptions:
    """SeriesOptions from request parameters; QueryError (one line) for a bad value."""
    outliers = params.get("outliers") or None
    if outliers is not None and outliers not in OUTLIER_METHODS:
        raise QueryError(f"outliers is one of {', '.join(OUTLIER_METHODS)}")
    smooth = params.get("smooth") or None
    if smooth is not None and smooth not in SMOOTHING:
        raise QueryError(f"smooth is one of {', '.join(SMOOTHING)}")
    threshold = None
    if params.get("threshold"):
        threshold = _number(params["threshold"], "threshold")
        if threshold <= 0:
            raise QueryError("threshold must be above 0")
    alpha = _number(params["alpha"], "alpha") if params.get("alpha") else 0.3
    if not 0 < alpha <= 1:
        raise QueryError("alpha must be above 0 and at most 1")
    return SeriesOptions(
        outliers=outliers,
        threshold=threshold,
        window=_window(params.get("window"), "window"),
        smooth=smooth,
        smooth_window=_window(params.get("smooth_window"), "smooth_window"),
        alpha=alpha,
    )


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise QueryError(f"{name} must be a number") from None
    if not math.isfinite(value):
        raise QueryError(f"{name} must be a finite number")
    return value


def _window(text: str | None, name: str) -> int:
    if not text:
        return 7
    if not text.isascii() or not text.isdigit() or not 2 <= int(text) <= MAX_WINDOW:
        raise QueryError(f"{name} must be a whole number from 2 to {MAX_WINDOW}")
    return int(text)
