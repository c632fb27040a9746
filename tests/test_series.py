"""Outliers (z-score on a trailing window, Tukey's IQR fences) and smoothing (moving
average, exponential) on known series; the parameters' errors."""

from __future__ import annotations

import pytest

from pixel_server.query import QueryError
from pixel_server.series import (
    SeriesOptions,
    exponential_smoothing,
    flags,
    iqr_flags,
    moving_average,
    parse_options,
    smoothed,
    zscore_flags,
)

FLAT_WITH_SPIKE = [10.0, 11, 9, 10, 12, 10, 11, 9, 95, 10, 11]


def test_one_spike_is_flagged_by_both_methods_and_nothing_else() -> None:
    spike = [i for i, flagged in enumerate(zscore_flags(FLAT_WITH_SPIKE)) if flagged]
    assert spike == [8]
    assert [i for i, flagged in enumerate(iqr_flags(FLAT_WITH_SPIKE)) if flagged] == [8]


def test_a_steady_trend_is_not_an_outlier_for_the_rolling_z_score() -> None:
    trend = [100.0 + 5 * i + (1 if i % 2 else -1) for i in range(30)]
    assert not any(zscore_flags(trend, window=7, threshold=3.0))


def test_too_few_points_and_nones_are_never_flagged() -> None:
    assert zscore_flags([1.0, 50.0, 1.0]) == [False, False, False]
    assert iqr_flags([1.0, 2.0, 300.0]) == [False, False, False]
    with_gaps = [10.0, None, 10, 10, 10, None, 40]
    assert zscore_flags(with_gaps) == [False] * 6 + [True]  # constant before: any change
    assert iqr_flags([None, 1.0, 2, 3, 4, 100, None])[5]


def test_traffic_that_stops_is_a_low_outlier() -> None:
    daily = [120.0, 118, 125, 122, 119, 121, 0]
    assert zscore_flags(daily)[-1]


def test_moving_average_and_exponential_smoothing_by_hand() -> None:
    assert moving_average([1.0, 2, 3, 4], window=2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([None, 2.0, None, 4], window=3) == [None, 2.0, 2.0, 3.0]
    out = exponential_smoothing([10.0, 20, None, 0], alpha=0.5)
    assert out == [10.0, 15.0, 15.0, 7.5]


def test_options_dispatch() -> None:
    values = FLAT_WITH_SPIKE
    assert flags(values, SeriesOptions()) == [False] * len(values)
    assert flags(values, SeriesOptions(outliers="iqr", threshold=100.0)) == [False] * len(values)
    assert smoothed(values, SeriesOptions()) is None
    assert smoothed([2.0, 4.0], SeriesOptions(smooth="ma", smooth_window=2)) == [2.0, 3.0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"outliers": "grubbs"}, "outliers"),
        ({"smooth": "loess"}, "smooth"),
        ({"threshold": "-1"}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"threshold": "abc"}, "threshold"),
        ({"window": "1"}, "window"),
        ({"window": "٣"}, "window"),
        ({"smooth_window": "9999"}, "smooth_window"),
        ({"alpha": "0"}, "alpha"),
        ({"alpha": "1.5"}, "alpha"),
    ],
)
def test_bad_options_are_one_line_errors(params: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_options(params)


def test_good_options_are_read() -> None:
    options = parse_options({"outliers": "zscore", "threshold": "2.5", "window": "14"})
    assert options == SeriesOptions(outliers="zscore", threshold=2.5, window=14)
    assert parse_options({"smooth": "ema", "alpha": "1"}).alpha == 1.0
