"""The dashboard's pages as HTML. Pure: the figures come from stats.py (the API's and the
CLI's own reports) and the hit log; everything shown is escaped here, since stored hits are
attacker-controlled (a ``<script>`` in a UTM value, a referrer or a user agent is text).

No script and no ``style`` attribute anywhere: the CSS is /dashboard/static/dashboard.css,
the chart is inline SVG (svgchart.py), every control a link or a GET form, so the URL is
the view and can be shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from .export import iso_time
from .svgchart import Point, render

CSS_PATH = "/dashboard/static/dashboard.css"
BREAKDOWNS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "device",
    "browser",
    "os",
    "link",
    "event",
)
HIT_COLUMNS = (
    ("time (UTC)", "ts"),
    ("kind", "kind"),
    ("event", "event"),
    ("cid", "cid"),
    ("uid", "uid"),
    ("utm_source", "utm_source"),
    ("referrer", "referer"),
    ("browser", "browser"),
    ("device", "device"),
    ("user agent", "ua"),
    ("class", "traffic"),
    ("reasons", "traffic_reasons"),
)
MAX_CELL_CHARS = 120


def e(value: Any) -> str:
    """``value`` as HTML text (None: empty), quotes too: safe in text and attributes."""
    return "" if value is None else escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title>"
        f'<link rel="icon" href="data:,"><link rel="stylesheet" href="{CSS_PATH}">'
        f"</head><body>{body}</body></html>"
    )


def login_page(csrf: str, error: str = "") -> str:
    message = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    return page(
        "pixel_server — log in",
        '<main class="login"><h1>pixel_server</h1>'
        f"{message}"
        '<form method="post" action="/dashboard/login">'
        '<label for="key">API key with the read scope</label>'
        '<input id="key" name="key" type="password" autocomplete="off" required>'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<button type="submit">Log in</button></form>'
        "<p>Make one with <code>pixel-server keys create --scope read</code>.</p></main>",
    )


def link(view: Mapping[str, str], **changes: str) -> str:
    """The dashboard URL of ``view`` with ``changes`` (an empty value drops the parameter)."""
    merged = {**view, **changes}
    return "/dashboard?" + urlencode({k: v for k, v in merged.items() if v})


def csv_link(view: Mapping[str, str], table: str, dim: str = "") -> str:
    params = {**{k: v for k, v in view.items() if v}, "table": table}
    if dim:
        params["dim"] = dim
    return "/dashboard/export.csv?" + urlencode(params)


def figure(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2%}" if value <= 1 else f"{value:,.2f}"
    return f"{value:,}"


def table(
    rows: Iterable[Mapping[str, Any]], first: str, metrics: Sequence[str], heading: str
) -> str:
    head = f'<th scope="col">{e(heading)}</th>' + "".join(
        f'<th scope="col">{e(metric)}</th>' for metric in metrics
    )
    body = []
    for row in rows:
        name = row.get(first)
        shown = "(none)" if name is None else str(name)[:MAX_CELL_CHARS]
        cells = "".join(
            f'<td data-metric="{e(m)}" data-value="{e(row.get(m))}">{e(figure(row.get(m)))}</td>'
            for m in metrics
        )
        body.append(f'<tr><th scope="row" data-key="{e(name)}">{e(shown)}</th>{cells}</tr>')
    if not body:
        body.append(f'<tr><td colspan="{len(metrics) + 1}">no hits</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def view_form(view: Mapping[str, str], metrics: Sequence[str]) -> str:
    def field(name: str, label: str, placeholder: str = "") -> str:
        return (
            f'<label>{e(label)} <input name="{e(name)}" value="{e(view.get(name, ""))}"'
            f' placeholder="{e(placeholder)}"></label>'
        )

    def choice(name: str, label: str, options: Sequence[str]) -> str:
        items = "".join(
            f'<option value="{e(o)}"{" selected" if view.get(name, "") == o else ""}>'
            f"{e(o or '—')}</option>"
            for o in options
        )
        return f'<label>{e(label)} <select name="{e(name)}">{items}</select></label>'

    machines = " checked" if view.get("machines") == "1" else ""
    return (
        '<form class="view" method="get" action="/dashboard">'
        + field("since", "since", "30d")
        + field("until", "until", "now")
        + choice("interval", "interval", ("", "hour", "day", "week", "month"))
        + field("zone", "zone", "UTC")
        + field("cid", "campaign", "all")
        + choice("metric", "chart", metrics)
        + choice("outliers", "outliers", ("", "zscore", "iqr"))
        + choice("smooth", "smoothing", ("", "ma", "ema"))
        + f'<label><input type="checkbox" name="machines" value="1"{machines}> machines</label>'
        + '<button type="submit">Show</button></form>'
    )


def chart_section(view: Mapping[str, str], report: Mapping[str, Any], metric: str) -> str:
    points = [
        Point(
            str(p["bucket"])[:16].replace("T", " "),
            None if p.get(metric) is None else float(p[metric]),
            metric in p.get("outlier", ()),
            (p.get("smoothed") or {}).get(metric),
        )
        for p in report["series"]
    ]
    flagged = sum(point.outlier for point in points)
    toggles = " · ".join(
        (
            f'<a href="{e(link(view, smooth="" if view.get("smooth") else "ema"))}">'
            f"{'hide' if view.get('smooth') else 'show'} smoothing</a>",
            f'<a href="{e(link(view, outliers="" if view.get("outliers") else "zscore"))}">'
            f"{'hide' if view.get('outliers') else 'mark'} outliers</a>",
            f'<a href="{e(csv_link(view, "series"))}">CSV</a>',
        )
    )
    note = f"<p>{flagged} outlier(s) marked.</p>" if view.get("outliers") else ""
    title = f"{metric} per {report['interval']} ({report['zone']})"
    return (
        f'<section id="chart"><h2>{e(title)}</h2><p class="tools">{toggles}</p>'
        f"{render(points, title)}{note}</section>"
    )


def hits_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f'<th scope="col">{e(name)}</th>' for name, _ in HIT_COLUMNS)
    body = []
    for row in rows:
        cells = []
        for _, key in HIT_COLUMNS:
            value = iso_time(row["ts"])[:19].replace("T", " ") if key == "ts" else row.get(key)
            text = "" if value is None else str(value)
            cells.append(f'<td data-column="{e(key)}">{e(text[:MAX_CELL_CHARS])}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(HIT_COLUMNS)}">no hits</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def section(ident: str, title: str, csv: str, content: str) -> str:
    return (
        f'<section id="{e(ident)}"><h2>{e(title)}</h2>'
        f'<p class="tools"><a href="{e(csv)}">CSV</a></p>{content}</section>'
    )


def dashboard_page(
    view: Mapping[str, str],
    csrf: str,
    metric: str,
    metrics: Sequence[str],
    reports: Mapping[str, Mapping[str, Any]],
    hits: Sequence[Mapping[str, Any]],
    error: str = "",
) -> str:
    """The whole page: the view form, then the overview, people and machines, the chart,
    the breakdowns and the recent hits (or the error that stopped them)."""
    header = (
        '<header><h1>pixel_server</h1><form method="post" action="/dashboard/logout">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<button type="submit">Log out</button></form></header>'
    )
    parts = [header, view_form(view, metrics)]
    if error:
        parts.append(f'<p class="error" role="alert">{e(error)}</p>')
        return page("pixel_server dashboard", "".join(parts))
    overview = reports["overview"]
    parts.append(
        f'<p class="span">{e(overview["since"])} to {e(overview["until"])}'
        f" · counted from {e(overview['source'])} · machines"
        f" {'included' if overview['machines'] else 'left out'}</p>"
    )
    parts.append(
        section(
            "overview",
            "Campaigns",
            csv_link(view, "overview"),
            table(overview["breakdown"], "cid", overview["metrics"], "campaign"),
        )
    )
    people = reports["traffic"]
    parts.append(
        section(
            "traffic",
            "People and machines",
            csv_link(view, "traffic"),
            table(people["breakdown"], "traffic", people["metrics"], "class"),
        )
    )
    parts.append(chart_section(view, reports["chart"], metric))
    for dim in BREAKDOWNS:
        report = reports[dim]
        parts.append(
            section(
                f"by-{dim}",
                f"By {dim}",
                csv_link(view, "breakdown", dim),
                table(report["breakdown"][:25], dim, report["metrics"], dim),
            )
        )
    parts.append(section("hits", "Recent hits", csv_link(view, "hits"), hits_table(hits)))
    return page("pixel_server dashboard", "".join(parts))
