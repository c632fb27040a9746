"""The SVG bar chart of req/s per scenario (``docs/benchmarks.svg``)."""

from __future__ import annotations

import html
from typing import Any

from report import X
from scenarios import BY_NAME, CONNECTIONS, SCENARIOS, SERVER_CPUS, WRK_CPUS, Scenario


def nice_step(span: float) -> float:
    raw = span / 8  # at most 8 steps
    magnitude = 10.0 ** int(f"{raw:e}".split("e")[1])
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * magnitude:
            return mult * magnitude
    return 10 * magnitude


def short_num(value: float) -> str:
    if value >= 1000:
        text = f"{value / 1000:.1f}".rstrip("0").rstrip(".")
        return f"{text}k"
    return f"{value:.0f}"


COLOURS = {
    "baseline": "#d07a2c",
    "anchor": "#7b5ea7",
    "uvicorn": "#2f6fb3",
    "granian": "#1f8a70",
    "paced": "#9dbde3",
    "postgresql": "#b8477a",
}
LEGEND = [
    ("baseline", "baseline (nginx, naive app)"),
    ("anchor", "anchor: raw ASGI app, stores nothing"),
    ("uvicorn", "pixel_server on uvicorn"),
    ("granian", "pixel_server on granian"),
    ("paced", "paced at half load"),
    ("postgresql", "pixel_server on PostgreSQL"),
]


def legend_layout(width: int) -> list[tuple[str, str, int, int]]:
    """(key, label, x, y) of each legend entry, wrapped to a new line where it would not fit."""
    out, x, y = [], 16, 78
    for key, label in LEGEND:
        span = 30 + int(7.4 * len(label))  # swatch, gap and a generous 13px-font text width
        if x > 16 and x + span > width - 16:
            x, y = 16, y + 22
        out.append((key, label, x, y))
        x += span
    return out


def colour_key(sc: Scenario) -> str:
    if sc.kind != "pixel_server":
        return sc.kind
    if sc.postgres:
        return "postgresql"
    return "paced" if sc.paced else sc.http_server


def render_svg(summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    rows = [s for s in (summary.get(sc.name) for sc in SCENARIOS) if s is not None and s["rps"]]
    width, left, right, bar_h, gap = 1000, 170, 300, 22, 9
    legend = legend_layout(width)
    top = 112 + legend[-1][3] - 78
    plot_w = width - left - right
    height = top + len(rows) * (bar_h + gap) + 46
    axis_max = max((s["rps"] for s in rows), default=1.0)
    step = nice_step(axis_max)
    axis_max = step * -(-axis_max // step)
    colours = COLOURS
    m, g = meta["machine"], meta["git"]
    settings = meta["settings"]
    sub1 = (
        f"wrk -t1 -c{CONNECTIONS} on core {WRK_CPUS}, server on core {SERVER_CPUS}, loopback; "
        f"{settings['warmup_s']} s warm-up, {settings['duration_s']} s measured, "
        f"median of {settings['repeat']} run(s) per scenario"
    )
    sub2 = (
        f"{m['cpu_model']}, {m['nproc']} CPUs, Linux {m['kernel']}; commit {g['commit']}"
        f"{' + uncommitted changes' if g['pixel_server_modified'] else ''}; "
        f"{meta['started_utc'][:16].replace('T', ' ')} UTC"
    )
    font = "font-family='system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif'"
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' {font} font-size='13'>",
        "<title>pixel_server benchmark: requests per second per scenario</title>",
        f"<rect width='{width}' height='{height}' fill='#ffffff'/>",
        "<text x='16' y='26' font-size='17' font-weight='600' fill='#222'>"
        "Requests per second: pixel_server and its baselines, measured in the same run</text>",
        f"<text x='16' y='46' font-size='11.5' fill='#555'>{html.escape(sub1)}</text>",
        f"<text x='16' y='62' font-size='11.5' fill='#555'>{html.escape(sub2)}</text>",
    ]
    for key, label, x, y in legend:
        out.append(f"<rect x='{x}' y='{y}' width='14' height='14' fill='{colours[key]}'/>")
        out.append(f"<text x='{x + 20}' y='{y + 12}' fill='#333'>{html.escape(label)}</text>")
    plot_bottom = top + len(rows) * (bar_h + gap)
    tick = 0.0
    while tick <= axis_max + 1e-9:
        tx = left + plot_w * tick / axis_max
        out.append(
            f"<line x1='{tx:.1f}' y1='{top - 6}' x2='{tx:.1f}' y2='{plot_bottom}' "
            "stroke='#e3e3e3'/>"
        )
        out.append(
            f"<text x='{tx:.1f}' y='{plot_bottom + 16}' text-anchor='middle' font-size='11' "
            f"fill='#666'>{short_num(tick)}</text>"
        )
        tick += step
    out.append(
        f"<text x='{left + plot_w / 2:.0f}' y='{plot_bottom + 34}' text-anchor='middle' "
        "font-size='11.5' fill='#444'>requests per second (higher is better)</text>"
    )
    for i, s in enumerate(rows):
        y = top + i * (bar_h + gap)
        key = colour_key(BY_NAME[s["name"]])
        w = max(plot_w * s["rps"] / axis_max, 1.0)
        label = s["name"]
        value = f"{s['rps']:,.0f} req/s"
        if s.get("eps") is not None and s["events_per_request"] > 1:
            value += f" \u00b7 {s['eps']:,.0f} events/s"
        if s.get("x_nginx") is not None and s["name"] not in ("nginx-log", "nginx-log-close"):
            value += f" \u00b7 {s['x_nginx']:.3f}{X} {BY_NAME[s['name']].nginx_ref}"
        if s.get("x_raw") is not None:
            value += f" \u00b7 {s['x_raw']:.2f}{X} {s['raw_ref']}"
        if BY_NAME[s["name"]].paced and s["p99_ms"] is not None:
            value += f" \u00b7 p99 {s['p99_ms']:.2f} ms"
        out.append(
            f"<text x='{left - 10}' y='{y + bar_h / 2 + 4.5:.1f}' text-anchor='end' "
            f"fill='#222'>{html.escape(label)}</text>"
        )
        out.append(
            f"<rect x='{left}' y='{y}' width='{w:.1f}' height='{bar_h}' rx='2' "
            f"fill='{colours[key]}'><title>{html.escape(s['title'])}</title></rect>"
        )
        out.append(
            f"<text x='{left + w + 6:.1f}' y='{y + bar_h / 2 + 4.5:.1f}' fill='#333' "
            f"font-size='12'>{html.escape(value)}</text>"
        )
    out.append(f"<line x1='{left}' y1='{top - 6}' x2='{left}' y2='{plot_bottom}' stroke='#999'/>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
