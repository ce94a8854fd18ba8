"""The report page without a browser: the legend names only what was drawn, MARKET children are in
the orders lane, and the latency row has every figure (tests/e2e/test_report_browser.py renders it)."""

from __future__ import annotations

import re

from jetexec.report_html import _latency_row, svg_chart

BASE = {
    "correlation_id": "x" + "1" * 23, "symbol": "AAPL", "side": "BUY", "t0": 100.0, "t1": 101.0, "t_start": 100.1, "t_end": 100.9,
    "arrival": 190.0, "vwap": None, "avg": 190.1, "vwap_source": None, "planned": [[100.2, 10.0]], "filled_cum": [[100.3, 10.0]], "target_qty": 10.0,
    "orders": [{"client_order_id": "c1-00-0", "side": "BUY", "state": "FILLED", "segments": [], "qty": 10.0, "filled": 10.0, "start": 100.2, "end": 100.3}],
    "fills": [[100.3, 190.1, 10.0, "c1-00-0"]], "market": [], "band": [], "prints": [],
}


def legend(svg: str) -> list[str]:
    return re.findall(r'<g class="legend" data-for="([^"]+)"', svg)


def test_the_legend_names_only_what_was_drawn():
    svg = svg_chart(BASE)
    assert legend(svg) == ["ref-arrival", "ref-avg", "order-life", "fill"]
    for cls in legend(svg):
        assert svg.count(f'class="{cls}"') >= 1
    with_market = svg_chart({**BASE, "market": [[100.2, 190.0], [100.6, 190.2]], "band": [[100.2, 189.9, 190.1], [100.6, 190.1, 190.3]], "vwap": 190.05, "vwap_source": "venue_tape"})
    assert legend(with_market)[:2] == ["market", "band"] and "ref-vwap" in legend(with_market)


def test_a_market_child_order_is_drawn_in_the_orders_lane():
    svg = svg_chart(BASE)
    life = re.search(r'<rect class="order-life" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
    assert life and float(life.group(2)) >= 2.0 and "MARKET" in svg


def test_the_latency_row_has_every_figure_even_when_a_fill_overtook_its_ack():
    row = _latency_row({"intent_to_ack": 59.8, "ack_to_first_fill": None, "first_fill_to_done": 4721.5, "intent_to_first_fill": 55.1, "intent_to_done": 4781.3})
    assert row.startswith("59.8 / 55.1 / 4781.3") and "before the ack" in row
    assert _latency_row({"intent_to_ack": 1.0, "intent_to_first_fill": None, "intent_to_done": 9.0}) == "1.0 / n/a / 9.0"
