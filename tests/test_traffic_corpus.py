"""The labelled corpus (tests/data/traffic_corpus.json): every class reaches 0.95 precision
and 0.9 recall under the current rules, and every row names a source the corpus cites.
`make classify-report` prints the same figures and the rows that miss."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pixel_server.fields import KINDS
from pixel_server.traffic import CLASSES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import classify_report  # bench/ is not a package: found on sys.path

DOCUMENT = classify_report.load()
ROWS = DOCUMENT["rows"]
MIN_PRECISION, MIN_RECALL = 0.95, 0.9


def test_every_row_has_a_cited_source_and_a_known_shape() -> None:
    sources = DOCUMENT["sources"]
    assert all(text.strip() for text in sources.values())
    for row in ROWS:
        assert row["source"] in sources, row
        assert row["expected"] in CLASSES, row
        assert row["kind"] in KINDS, row
        assert row["method"] in ("GET", "HEAD", "POST"), row
        assert row["ua"] is None or isinstance(row["ua"], str), row
    assert set(sources) == {row["source"] for row in ROWS}, "a source no row uses"


def test_the_corpus_covers_every_class_and_the_hard_cases() -> None:
    assert 150 <= len(ROWS) <= 250
    assert {row["expected"] for row in ROWS} == set(CLASSES)
    sources = {row["source"] for row in ROWS}
    for case in (
        "mautic#16069",
        "warmbly#569",
        "gophish#973",
        "hachyderm#212",
        "discord-api-docs#1600",
    ):
        assert case in sources, case


@pytest.mark.parametrize("score", classify_report.evaluate(ROWS)[0], ids=lambda s: s.cls)
def test_every_class_is_precise_and_found(score: classify_report.Score) -> None:
    misses = [
        (row["ua"], row["kind"], found.cls)
        for row, found in classify_report.evaluate(ROWS)[1]
        if score.cls in (row["expected"], found.cls)
    ]
    assert score.precision >= MIN_PRECISION, misses
    assert score.recall >= MIN_RECALL, misses


def test_the_report_prints_every_class() -> None:
    text = classify_report.report(DOCUMENT)
    for cls in CLASSES:
        assert f"| `{cls}` |" in text
    assert "confusion rows" in text
