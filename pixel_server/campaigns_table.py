"""A campaign's totals (totals.py) as a terminal table; every stored string escaped."""

from __future__ import annotations

from .terminal import escape, fit
from .totals import CampaignTotals, Figures

FIGURES = (
    ("", 10),
    ("opens", 7),
    ("openers", 7),  # unique opens
    ("inferred", 8),
    ("clicks", 7),
    ("clickers", 8),  # unique clicks
    ("CTOR", 6),
    ("views", 7),
)
LINKS = (("link", 48), ("clicks", 7), ("clickers", 8), ("machine", 7))


def _row(cells: list[str], widths: tuple[tuple[str, int], ...]) -> str:
    first, *rest = zip(cells, widths, strict=True)
    text = fit(first[0], first[1][1]) + "".join(
        " " * (width - len(cell) + 2) + cell for cell, (_, width) in rest
    )
    return text.rstrip()


def _figures(name: str, f: Figures) -> str:
    ctor = "-" if f.ctor is None else f"{f.ctor:.1%}"
    numbers = (f.opens, f.unique_opens, f.inferred_opens, f.clicks, f.unique_clicks)
    return _row([name, *map(str, numbers), ctor, str(f.views)], FIGURES)


def campaign_table(report: CampaignTotals) -> str:
    """The table ``pixel-server campaign`` prints."""
    counted = "people and machines" if report.machines_included else "people"
    body = report.as_dict()
    since = "every hit" if body["since"] is None else f"hits from {body['since'][:10]}"
    lines = [
        f"campaign {escape(report.cid)}: {since} to {body['until'][:10]}, counting {counted}",
        "",
        _row([name for name, _ in FIGURES], FIGURES),
    ]
    if report.machines_included:
        lines.append(_figures("totals", report.totals))
    lines += [_figures("people", report.people), _figures("machines", report.machines)]
    for name, entry in report.classes.items():
        reasons = ", ".join(f"{escape(r)} {n}" for r, n in entry.reasons.most_common(3))
        pairs = (("opens", entry.opens), ("clicks", entry.clicks), ("views", entry.views))
        counts = ", ".join(f"{noun} {n}" for noun, n in pairs if n) or "HEAD only"
        lines.append(f"  {fit(name, 13)} {counts}" + (f" ({reasons})" if reasons else ""))
    people = report.people
    lines.append(
        f"not counted: {report.proxy_repeats} proxy repeats, {report.head} HEAD requests;"
        f" without uid: {people.anonymous_opens} opens, {people.anonymous_clicks} clicks"
    )
    if report.links:
        shown = f"links ({len(report.links)} of {report.links_total})"
        lines += ["", _row([shown, *(name for name, _ in LINKS[1:])], LINKS)]
        for link in report.links:
            numbers = (link.clicks, link.unique_clicks, link.machine_clicks)
            lines.append(_row([escape(link.url), *map(str, numbers)], LINKS))
    return "\n".join(lines)
