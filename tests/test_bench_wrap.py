"""The wrap step of `make bench` (bench/wrapping.py) on a tiny send: it runs the real CLI in
both output forms, checks what they wrote and reports ratios to the target."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import wrapping


def test_the_wrap_step_measures_and_reports(tmp_path: Path) -> None:
    said: list[str] = []
    result = wrapping.run(tmp_path, said.append, recipients=5, links=3, runs=1)
    assert said
    assert result["recipients"] == 5
    for key in ("ndjson", "out_dir"):
        assert result[key]["wall_per_s"] > 0
        assert result[key]["cpu_per_s"] > 0
    assert result["ratios"]["in_process"] == result["in_process_cpu_per_s"] / wrapping.TARGET
    text = wrapping.report(result)
    assert "--out-dir" in text
    assert "÷ 1,000" in text
    assert not (tmp_path / "wrap").exists()  # its files are removed
