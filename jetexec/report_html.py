"""The TCA report as one self-contained HTML page: inline CSS and inline SVG, no script, no network.

:func:`render` takes the report document built by ``jetexec.report.build_report`` (the same one
``jetexec report --json`` prints) and returns the page. Each execution gets a summary table and a
chart (:func:`svg_chart`): the market mid over the execution window (with the bid/ask band, or the
venue's prints when no quotes were recorded), the arrival price, the interval VWAP and the average
fill price; every child order's limit price over its life (re-prices included) and its fills
(dots sized by quantity); a lane with every child order's life from sent to closed (MARKET orders
have no price line, so the lane is where they show); underneath, the planned schedule against
cumulative fills. The legend names only what was drawn: each entry carries ``data-for`` with the
class of the elements it describes (the browser test checks that they are rendered).
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from dataclasses import dataclass
from typing import Any

W = 960
H_PRICE = 300
H_QTY = 110
M_LEFT = 78
M_RIGHT = 24
M_TOP = 34
LANE = 30  # the child-orders lane between the price and the quantity panels
GAP = 34 + LANE
M_BOTTOM = 34
H = M_TOP + H_PRICE + GAP + H_QTY + M_BOTTOM

ORDER_COLORS = ("#1f77b4", "#17becf", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#aec7e8")

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 6px} .muted{color:#777;font-size:12px}
table{border-collapse:collapse;margin:8px 0 12px;background:#fff} td,th{border:1px solid #ddd;padding:3px 8px;font-size:12.5px;text-align:right}
th{background:#f0f0f0;text-align:left} td.l{text-align:left} .card{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:12px 16px;margin:16px 0}
.kv td:first-child{text-align:left;color:#555} .pos{color:#b22222} .neg{color:#1a7f37} svg{background:#fff}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _fmt_ts(ts: float | None) -> str:
    if not ts:
        return ""
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.2f}"
    if a >= 1:
        return f"{v:.3f}"
    return f"{v:.5g}"


@dataclass(frozen=True)
class _Scale:
    """Maps time, price and cumulative quantity to chart coordinates."""

    t0: float
    t1: float
    lo: float
    hi: float
    qmax: float
    pw: float = W - M_LEFT - M_RIGHT
    qy0: float = M_TOP + H_PRICE + GAP  # top of the quantity panel

    def x(self, t: float) -> float:
        return M_LEFT + (t - self.t0) / (self.t1 - self.t0) * self.pw

    def y(self, p: float) -> float:
        return M_TOP + (self.hi - p) / (self.hi - self.lo) * H_PRICE

    def yq(self, q: float) -> float:
        return self.qy0 + (self.qmax - q) / self.qmax * H_QTY


def _scale_of(c: dict[str, Any]) -> _Scale:
    """Time spans the window (at least 1 s); price spans everything drawn, with a 12 % margin."""
    t0, t1 = float(c["t0"]), float(c["t1"])
    if t1 <= t0:
        t1 = t0 + 1.0
    prices: list[float] = []
    prices += [m[1] for m in c.get("market", [])]
    prices += [b[1] for b in c.get("band", [])] + [b[2] for b in c.get("band", [])]
    prices += [p[1] for p in c.get("prints", [])]
    prices += [f[1] for f in c.get("fills", [])]
    prices += [s[2] for o in c.get("orders", []) for s in o["segments"]]
    prices += [v for v in (c.get("arrival"), c.get("vwap"), c.get("avg")) if v]
    if not prices:
        prices = [0.0, 1.0]
    lo, hi = min(prices), max(prices)
    span = hi - lo or max(abs(hi) * 0.001, 0.01)
    qmax = max([c.get("target_qty") or 0.0] + [p[1] for p in c.get("planned", [])] + [f[1] for f in c.get("filled_cum", [])] + [1e-9])
    return _Scale(t0, t1, lo - span * 0.12, hi + span * 0.12, qmax)


def _vwap_label(c: dict[str, Any]) -> str:
    return "VWAP" if c.get("vwap_source") == "venue_tape" else "quote TWAP"


def _fill_color(c: dict[str, Any]) -> str:
    return "#2ca02c" if c.get("side") == "BUY" else "#d62728"


def _frames_and_grid(c: dict[str, Any], s: _Scale) -> list[str]:
    out = [
        f'<rect x="{M_LEFT}" y="{M_TOP}" width="{s.pw}" height="{H_PRICE}" fill="#fff" stroke="#ccc"/>',
        f'<rect x="{M_LEFT}" y="{s.qy0}" width="{s.pw}" height="{H_QTY}" fill="#fff" stroke="#ccc"/>',
    ]
    base = c.get("t_start") or s.t0  # time ticks count from the execution's start
    for t in _nice_ticks(s.t0 - base, s.t1 - base, 8):
        xx = s.x(base + t)
        if M_LEFT <= xx <= M_LEFT + s.pw:
            out.append(f'<line x1="{xx:.1f}" y1="{M_TOP}" x2="{xx:.1f}" y2="{s.qy0 + H_QTY}" stroke="#eee"/>')
            out.append(f'<text x="{xx:.1f}" y="{s.qy0 + H_QTY + 14}" text-anchor="middle" fill="#555">{t:+.2f}s</text>')
    for p in _nice_ticks(s.lo, s.hi, 6):
        yy = s.y(p)
        out.append(f'<line x1="{M_LEFT}" y1="{yy:.1f}" x2="{M_LEFT + s.pw}" y2="{yy:.1f}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{M_LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#555">{_fmt_num(p)}</text>')
    for q in _nice_ticks(0, s.qmax, 3):
        yy = s.yq(q)
        out.append(f'<text x="{M_LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#555">{q:g}</text>')
    out.append(f'<text x="{M_LEFT}" y="{M_TOP - 18}" fill="#333" font-size="12">price</text>')
    out.append(f'<text x="{M_LEFT}" y="{s.qy0 - 6}" fill="#333" font-size="12">cumulative quantity: planned schedule (dashed) vs filled</text>')
    return out


def _execution_window(c: dict[str, Any], s: _Scale) -> list[str]:
    out = []
    for t, label in ((c.get("t_start"), "start"), (c.get("t_end"), "end")):
        if t:
            xx = s.x(t)
            out.append(f'<line x1="{xx:.1f}" y1="{M_TOP}" x2="{xx:.1f}" y2="{M_TOP + H_PRICE}" stroke="#bbb" stroke-dasharray="2,3"><title>{label} {_e(_fmt_ts(t))}</title></line>')
    return out


def _market(c: dict[str, Any], s: _Scale) -> list[str]:
    out = []
    band = c.get("band") or []
    if band:
        upper = " ".join(f"{s.x(b[0]):.1f},{s.y(b[2]):.1f}" for b in band)
        lower = " ".join(f"{s.x(b[0]):.1f},{s.y(b[1]):.1f}" for b in reversed(band))
        out.append(f'<polygon class="band" points="{upper} {lower}" fill="#dbe9f6" stroke="none"><title>bid/ask</title></polygon>')
    market = c.get("market") or []
    if market:
        pts = " ".join(f"{s.x(m[0]):.1f},{s.y(m[1]):.1f}" for m in market)
        out.append(f'<polyline class="market" points="{pts}" fill="none" stroke="#555" stroke-width="1.4"><title>market mid (venue quotes)</title></polyline>')
    for p in c.get("prints") or []:
        out.append(f'<circle class="print" cx="{s.x(p[0]):.1f}" cy="{s.y(p[1]):.1f}" r="1.6" fill="#999"><title>market print {p[2]:g} @ {p[1]:g}</title></circle>')
    return out


def _reference_lines(c: dict[str, Any], s: _Scale) -> list[str]:
    """Arrival, interval VWAP and average fill price across the whole window, labelled apart."""
    out = []
    label_at = {"arrival": (M_LEFT + s.pw - 4, "end"), "vwap": (M_LEFT + 4, "start"), "avg": (M_LEFT + s.pw * 0.55, "middle")}
    for key, color, label in (("arrival", "#ff7f0e", "arrival"), ("vwap", "#8e44ad", _vwap_label(c)), ("avg", "#2ca02c", "avg fill")):
        v = c.get(key)
        if v:
            yy = s.y(v)
            dash = ' stroke-dasharray="6,4"' if key != "avg" else ""
            out.append(f'<line class="ref-{key}" x1="{M_LEFT}" y1="{yy:.1f}" x2="{M_LEFT + s.pw}" y2="{yy:.1f}" stroke="{color}" stroke-width="1.3"{dash}><title>{label} {v:g}</title></line>')
            label_x, anchor = label_at[key]
            out.append(f'<text x="{label_x:.1f}" y="{yy - 4:.1f}" text-anchor="{anchor}" fill="{color}">{label} {_fmt_num(v)}</text>')
    return out


def _child_orders(c: dict[str, Any], s: _Scale) -> list[str]:
    """The limit price over each child's life (LIMIT), and every child's life in the lane."""
    out = []
    lane_top = M_TOP + H_PRICE + 10
    orders = c.get("orders") or []
    if orders:
        out.append(f'<text x="{M_LEFT - 6}" y="{lane_top + 12}" text-anchor="end" fill="#555">orders</text>')
    for i, o in enumerate(orders):
        color = ORDER_COLORS[i % len(ORDER_COLORS)]
        for seg in o["segments"]:
            out.append(f'<line class="order" x1="{s.x(seg[0]):.1f}" y1="{s.y(seg[2]):.1f}" x2="{s.x(max(seg[1], seg[0])):.1f}" y2="{s.y(seg[2]):.1f}" stroke="{color}" stroke-width="2.4" stroke-linecap="round"><title>{_e(o["client_order_id"])} {_e(o["side"])} {o["qty"]:g} @ {seg[2]:g} ({_e(o["state"])}, filled {o["filled"]:g})</title></line>')
        start, end = o.get("start"), o.get("end")
        if start is not None:
            x0, x1 = s.x(start), max(s.x(end if end is not None else start), s.x(start) + 2.0)  # at least 2 px: an instant fill stays visible
            yy = lane_top + 2 + (i % 4) * 5
            price = f" @ {o['segments'][0][2]:g}" if o["segments"] else " MARKET"
            out.append(f'<rect class="order-life" x="{x0:.1f}" y="{yy}" width="{x1 - x0:.1f}" height="4" fill="{color}"><title>{_e(o["client_order_id"])} {_e(o["side"])} {o["qty"]:g}{price}: {_e(o["state"])}, filled {o["filled"]:g}</title></rect>')
    return out


def _fills(c: dict[str, Any], s: _Scale) -> list[str]:
    """One dot per fill; its radius grows with the square root of the quantity (area, past a minimum)."""
    fills = c.get("fills") or []
    fmax = max([f[2] for f in fills] + [1e-9])
    color = _fill_color(c)
    return [
        f'<circle class="fill" cx="{s.x(f[0]):.1f}" cy="{s.y(f[1]):.1f}" r="{3.0 + 6.0 * math.sqrt(f[2] / fmax):.1f}" fill="{color}" fill-opacity="0.75" stroke="#222" stroke-width="0.6"><title>fill {f[2]:g} @ {f[1]:g} ({_e(f[3])}) {_e(_fmt_ts(f[0]))}</title></circle>'
        for f in fills
    ]


def _step_line(steps: list, s: _Scale) -> str:
    """A cumulative quantity as a step function from the window's start to its end."""
    pts = [(s.x(s.t0), s.yq(0))]
    prev = 0.0
    for t, q in steps:
        pts += [(s.x(t), s.yq(prev)), (s.x(t), s.yq(q))]
        prev = q
    pts.append((s.x(s.t1), s.yq(prev)))
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)


def _schedule(c: dict[str, Any], s: _Scale) -> list[str]:
    """The planned schedule against cumulative fills, under the target."""
    out = []
    if planned := c.get("planned") or []:
        out.append(f'<polyline class="planned" points="{_step_line(planned, s)}" fill="none" stroke="#777" stroke-width="1.5" stroke-dasharray="5,4"><title>planned schedule</title></polyline>')
    if cum := c.get("filled_cum") or []:
        out.append(f'<polyline class="filled" points="{_step_line(cum, s)}" fill="none" stroke="#2ca02c" stroke-width="2"><title>cumulative filled</title></polyline>')
    if c.get("target_qty"):
        yy = s.yq(c["target_qty"])
        out.append(f'<line x1="{M_LEFT}" y1="{yy:.1f}" x2="{M_LEFT + s.pw}" y2="{yy:.1f}" stroke="#ccc" stroke-dasharray="1,3"><title>target {c["target_qty"]:g}</title></line>')
    return out


def _legend(c: dict[str, Any], drawn: str) -> list[str]:
    """Only what was drawn: an entry names the class of its elements in ``data-for``."""
    entries = (
        ("market", "market mid", "#555", "line"),
        ("band", "bid/ask", "#dbe9f6", "box"),
        ("print", "market prints", "#999", "dot"),
        ("ref-arrival", "arrival", "#ff7f0e", "line"),
        ("ref-vwap", _vwap_label(c), "#8e44ad", "line"),
        ("ref-avg", "avg fill", "#2ca02c", "line"),
        ("order-life", "child orders", ORDER_COLORS[0], "box"),
        ("fill", "fills", _fill_color(c), "dot"),
    )
    out = []
    lx = M_LEFT + 70
    for cls, label, color, kind in entries:
        if f'class="{cls}"' not in drawn:
            continue
        out.append(f'<g class="legend" data-for="{cls}">')
        if kind == "line":
            out.append(f'<line x1="{lx}" y1="{M_TOP - 22}" x2="{lx + 16}" y2="{M_TOP - 22}" stroke="{color}" stroke-width="2"/>')
        elif kind == "box":
            out.append(f'<rect x="{lx}" y="{M_TOP - 27}" width="16" height="10" fill="{color}"/>')
        else:
            out.append(f'<circle cx="{lx + 8}" cy="{M_TOP - 22}" r="4" fill="{color}"/>')
        out.append(f'<text x="{lx + 20}" y="{M_TOP - 18}" fill="#333">{label}</text></g>')
        lx += 34 + 7 * len(label)
    return out


def svg_chart(c: dict[str, Any]) -> str:
    """The chart of one execution as an inline ``<svg>`` element, drawn back to front."""
    s = _scale_of(c)
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="execution chart {_e(c.get("correlation_id"))}" font-family="Helvetica,Arial,sans-serif" font-size="11">',
        f'<title>{_e(c.get("symbol"))} {_e(c.get("side"))} {_e(c.get("correlation_id"))}</title>',
    ]
    for layer in (_frames_and_grid, _execution_window, _market, _reference_lines, _child_orders, _fills, _schedule):
        out += layer(c, s)
    out += _legend(c, "".join(out))
    out.append("</svg>")
    return "".join(out)


def _row(label: str, value: Any, cls: str = "") -> str:
    return f'<tr><td>{_e(label)}</td><td class="{cls}">{_e(value)}</td></tr>'


def _bps_cls(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    return "pos" if f > 0 else ("neg" if f < 0 else "")


def _lat(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    return "n/a" if v is None else f"{v:.1f}"


def _latency_row(lat: dict[str, Any]) -> str:
    """Each event measured from the intent, so every figure is there even when a fill overtook its
    ack (then ``ack_to_first_fill`` is None, and the row says so)."""
    text = f'{_lat(lat, "intent_to_ack")} / {_lat(lat, "intent_to_first_fill")} / {_lat(lat, "intent_to_done")}'
    ack, fill = lat.get("intent_to_ack"), lat.get("intent_to_first_fill")
    if ack is not None and fill is not None and fill < ack:
        text += "  (the first fill came before the ack)"
    return text


def execution_section(item: dict[str, Any]) -> str:
    t = item["tca"]
    lat = t.get("latency_ms") or {}
    rows = [
        _row("state", f'{t["state"]}' + (f' ({t["reason_code"]})' if t.get("reason_code") else "")),
        _row("strategy", f'{t.get("strategy") or ""} · {t.get("strategy_id") or ""}'),
        _row("target / filled", f'{t["target_qty"]} / {t["filled_qty"]}  (fill rate {t["fill_rate"]})'),
        _row("avg fill price", t.get("avg_price")),
        _row("arrival price (mid at acceptance)", t.get("arrival_price")),
        _row("arrival slippage (bps, + = cost)", t.get("arrival_slippage_bps"), _bps_cls(t.get("arrival_slippage_bps"))),
        _row("arrival cost (money)", t.get("arrival_cost")),
        _row(f'interval VWAP ({t.get("vwap_source") or "n/a"})', t.get("interval_vwap")),
        _row("VWAP slippage (bps, + = cost)", t.get("vwap_slippage_bps"), _bps_cls(t.get("vwap_slippage_bps"))),
        _row("market volume / prints", f'{t.get("market_volume") if t.get("market_volume") is not None else "n/a"} / {t.get("market_prints")}'),
        _row("participation rate", t.get("participation_rate") if t.get("participation_rate") is not None else "n/a"),
        _row("notional / fees (bps)", f'{t["notional"]} / {t["fees"]} ({t.get("fees_bps") or "n/a"})'),
        _row("completion time (s)", t.get("completion_s")),
        _row("children / sent / fills", f'{t["children"]} / {t["orders_sent"]} / {t["fills"]}'),
        _row("client cancels / replaces (ratio)", f'{t["client_cancels"]} / {t["replaces"]} ({t.get("cancel_replace_ratio") or "n/a"})'),
        _row("rejects by reason", ", ".join(f"{k}: {v}" for k, v in (t.get("rejects") or {}).items()) or "none"),
        _row("latency ms from intent: ack / first fill / done", _latency_row(lat)),
    ]
    win = t.get("window") or [None, None]
    return (
        f'<div class="card execution" id="{_e(t["correlation_id"])}">'
        f'<h2>{_e(t["symbol"])} {_e(t["side"])} {_e(t["target_qty"])} — {_e(t["correlation_id"])}</h2>'
        f'<div class="muted">window {_e(_fmt_ts(win[0]))} → {_e(_fmt_ts(win[1]))}</div>'
        f'<table class="kv">{"".join(rows)}</table>'
        + (svg_chart(item["chart"]) if (item["chart"].get("orders") or item["chart"].get("fills")) else '<div class="muted">no orders reached the venue: nothing to chart</div>')
        + "</div>"
    )


def batch_section(b: dict[str, Any], items: list[dict[str, Any]]) -> str:
    lat = b.get("latency_ms") or {}
    head = "<tr><th>latency (ms)</th><th>n</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>"
    lrows = "".join(f'<tr><td class="l">{_e(k)}</td><td>{_e(v.get("n"))}</td><td>{_e(v.get("p50"))}</td><td>{_e(v.get("p90"))}</td><td>{_e(v.get("p99"))}</td><td>{_e(v.get("max"))}</td></tr>' for k, v in lat.items())
    comp = b.get("completion_s") or {}
    summary = [
        _row("executions", b["executions"]),
        _row("states", ", ".join(f"{k}: {v}" for k, v in b["states"].items())),
        _row("filled notional / fees", f'{b["filled_notional"]} / {b["fees"]}'),
        _row("arrival slippage (bps, notional-weighted)", b.get("arrival_slippage_bps"), _bps_cls(b.get("arrival_slippage_bps"))),
        _row("VWAP slippage (bps, notional-weighted)", b.get("vwap_slippage_bps"), _bps_cls(b.get("vwap_slippage_bps"))),
        _row("arrival cost (money)", b.get("arrival_cost")),
        _row("fill rate (mean) / fully filled", f'{b.get("fill_rate_mean")} / {b["fully_filled"]}'),
        _row("participation (mean)", b.get("participation_rate_mean") or "n/a"),
        _row("children / sent / cancels / replaces", f'{b["children"]} / {b["orders_sent"]} / {b["client_cancels"]} / {b["replaces"]} (ratio {b.get("cancel_replace_ratio") or "n/a"})'),
        _row("rejects by reason", ", ".join(f"{k}: {v}" for k, v in (b.get("rejects") or {}).items()) or "none"),
        _row("failed executions by reason", ", ".join(f"{k}: {v}" for k, v in (b.get("failed_by_reason") or {}).items()) or "none"),
        _row("completion s p50 / p90 / max", f'{comp.get("p50")} / {comp.get("p90")} / {comp.get("max")}'),
    ]
    per = "<tr><th>execution</th><th>symbol</th><th>side</th><th>state</th><th>filled</th><th>avg</th><th>arrival bps</th><th>VWAP bps</th><th>fill rate</th><th>completion s</th></tr>" + "".join(
        f'<tr><td class="l"><a href="#{_e(i["tca"]["correlation_id"])}">{_e(i["tca"]["correlation_id"])}</a></td><td class="l">{_e(i["tca"]["symbol"])}</td><td class="l">{_e(i["tca"]["side"])}</td><td class="l">{_e(i["tca"]["state"])}</td>'
        f'<td>{_e(i["tca"]["filled_qty"])}</td><td>{_e(i["tca"].get("avg_price"))}</td><td class="{_bps_cls(i["tca"].get("arrival_slippage_bps"))}">{_e(i["tca"].get("arrival_slippage_bps"))}</td>'
        f'<td class="{_bps_cls(i["tca"].get("vwap_slippage_bps"))}">{_e(i["tca"].get("vwap_slippage_bps"))}</td><td>{_e(i["tca"]["fill_rate"])}</td><td>{_e(i["tca"].get("completion_s"))}</td></tr>'
        for i in items
    )
    return f'<div class="card batch"><h2>Batch</h2><table class="kv">{"".join(summary)}</table><table>{head}{lrows}</table><table>{per}</table></div>'


def render(doc: dict[str, Any], title: str = "jetexec — transaction cost report") -> str:
    items = doc.get("executions") or []
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="muted">{len(items)} execution(s). Slippage: positive = cost, in basis points. Generated {_e(_fmt_ts(doc.get("generated_at")))}. Self-contained page: no scripts, no network.</div>',
    ]
    if doc.get("batch") and len(items) != 1:
        parts.append(batch_section(doc["batch"], items))
    parts += [execution_section(i) for i in items]
    parts.append("</body></html>")
    return "\n".join(parts)
