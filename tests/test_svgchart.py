"""svgchart.py: the server-drawn chart — its points, outliers, smoothed line, axis labels,
and that every text in it is escaped (a bucket label or a title could come from a hit)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pixel_server.svgchart import Point, nice_ceiling, render

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, parsed to prove it is well-formed


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1.0), (-3, 1.0), (1, 1.0), (3, 5.0), (7, 10.0), (120, 200.0)]
)
def test_the_y_axis_ends_at_a_round_number(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == ceiling


def test_points_outliers_and_the_smoothed_line() -> None:
    points = [
        Point("2026-11-01", 3, smoothed=3),
        Point("2026-11-02", None),
        Point("2026-11-03", 40, outlier=True, smoothed=21.5),
        Point("2026-11-04", 4, smoothed=12.8),
    ]
    root = _parse(render(points, "hits per day"))
    circles = root.findall(f"{SVG}circle")
    outliers = root.findall(f"{SVG}rect[@class='outlier']")
    assert len(circles) == 2  # the missing bucket draws no point
    assert len(outliers) == 1
    assert outliers[0].findtext(f"{SVG}title") == "2026-11-03: 40 (outlier)"
    lines = {p.get("class"): p.get("points", "").split() for p in root.iter(f"{SVG}polyline")}
    assert len(lines["series"]) == 3
    assert len(lines["smoothed"]) == 3
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"0", "50", "25"} <= set(labels)  # y from 0 to the round top
    assert {"2026-11-01", "2026-11-03", "2026-11-04"} <= set(labels)  # first, middle, last


def test_no_smoothed_line_unless_asked_and_an_empty_chart_still_draws() -> None:
    root = _parse(render([Point("a", 1), Point("b", 2)], "t"))
    assert [p.get("class") for p in root.iter(f"{SVG}polyline")] == ["series"]
    assert _parse(render([], "nothing")).findtext(f"{SVG}title") == "nothing"


def test_every_text_is_escaped() -> None:
    payload = '"><script>window.__xss=1</script><img src=x onerror=alert(1)>'
    svg = render([Point(payload, 1, outlier=True), Point(payload, 2)], payload)
    assert "<script" not in svg
    assert "<img" not in svg
    root = _parse(svg)
    assert root.get("aria-label") == payload
    assert root.findtext(f"{SVG}title") == payload
    assert not root.findall(f".//{SVG}script")
    assert "style=" not in svg  # the CSP refuses style attributes: classes only
