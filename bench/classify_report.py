"""Precision and recall of the traffic classes (pixel_server/traffic.py) on the labelled
corpus tests/data/traffic_corpus.json: every row is classified as the pixel or the redirect
would classify it, with the shipped network lists.

    .venv/bin/python bench/classify_report.py [--corpus PATH]     (or: make classify-report)

Printed: per class, the rows labelled so, the rows classified so, precision and recall; then
every row whose class differs from its label (the confusion rows), with its source.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixel_server.traffic import CLASSES, RULES_VERSION, Verdict, classify

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "traffic_corpus.json"


def load(path: Path = CORPUS) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def verdict(row: dict[str, Any]) -> Verdict:
    """The class of one corpus row, from what the request shows."""
    headers = {name.lower(): value for name, value in (row.get("headers") or {}).items()}
    return classify(
        method=row["method"],
        ua=row["ua"],
        kind=row["kind"],
        ip=row.get("ip"),
        purpose=headers.get("sec-purpose") or headers.get("purpose"),
        since_send_s=row.get("seconds_since_send"),
    )


@dataclass(frozen=True)
class Score:
    cls: str
    labelled: int
    predicted: int
    correct: int

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.labelled if self.labelled else 1.0


def evaluate(
    rows: list[dict[str, Any]],
) -> tuple[list[Score], list[tuple[dict[str, Any], Verdict]]]:
    """Per-class scores (classes with rows or predictions) and the misclassified rows."""
    labelled: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    misses = []
    for row in rows:
        found = verdict(row)
        labelled[row["expected"]] += 1
        predicted[found.cls] += 1
        if found.cls == row["expected"]:
            correct[found.cls] += 1
        else:
            misses.append((row, found))
    scores = [
        Score(cls, labelled[cls], predicted[cls], correct[cls])
        for cls in CLASSES
        if labelled[cls] or predicted[cls]
    ]
    return scores, misses


def report(document: dict[str, Any]) -> str:
    rows = document["rows"]
    scores, misses = evaluate(rows)
    lines = [
        f"traffic rules v{RULES_VERSION}, {len(rows)} rows",
        "",
        "| class | rows | classified so | precision | recall |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| `{s.cls}` | {s.labelled} | {s.predicted} | {s.precision:.3f} | {s.recall:.3f} |"
        )
    lines += ["", f"confusion rows ({len(misses)}):"]
    for row, found in misses:
        reasons = ",".join(found.reasons) or "-"
        lines.append(
            f"  expected {row['expected']}, got {found.cls} ({reasons}): {row['method']}"
            f" {row['kind']} ua={row['ua']!r} ip={row.get('ip')}"
            f" since={row.get('seconds_since_send')} [{row['source']}]"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    print(report(load(args.corpus)))


if __name__ == "__main__":
    main()
