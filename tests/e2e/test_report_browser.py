"""The TCA report in a real browser (headless Chromium): every legend entry names something that is
actually rendered, MARKET child orders show, and the latency row has every figure.

Chromium comes from Debian (`apt-get install -y chromium`; `.ci/run` installs it when it can). Where
it is absent the test is skipped and says so: the page is still checked without a browser by
tests/unit/test_report_html.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.harness import Up

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on this machine (apt-get install -y chromium): the browser check of the TCA report is skipped"),
]

# Runs in the browser after layout: what each chart's legend promises, and what is rendered.
PROBE = """
<pre id="probe"></pre><script>
const charts = [...document.querySelectorAll('svg')].map(svg => {
  const box = svg.getBoundingClientRect();
  const legend = [...svg.querySelectorAll('g.legend')].map(g => g.dataset.for);
  const rendered = {};
  for (const cls of ['market','band','print','ref-arrival','ref-vwap','ref-avg','order','order-life','fill','planned','filled']) {
    rendered[cls] = [...svg.querySelectorAll('.' + cls)].filter(el => {
      const r = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      return style.display !== 'none' && style.visibility !== 'hidden' && (r.width > 0 || r.height > 0)
        && r.right >= box.left && r.left <= box.right && r.bottom >= box.top && r.top <= box.bottom;
    }).length;
  }
  return {id: svg.getAttribute('aria-label'), legend, rendered};
});
const latency = [...document.querySelectorAll('tr')].filter(tr => tr.textContent.startsWith('latency ms from intent')).map(tr => tr.lastChild.textContent);
document.getElementById('probe').textContent = JSON.stringify({charts, latency});
</script>
"""


def _chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args], capture_output=True, timeout=timeout)


def test_the_report_renders_what_its_legend_promises(tmp_path):
    with Up(tmp_path) as up:
        specs = {s["symbol"]: s for s in map(json.loads, up.cli("symbols", "--json").stdout.decode().splitlines())}
        aapl = Decimal(specs["AAPL"]["reference_price"])
        resting = str((aapl * Decimal("0.99")).quantize(Decimal(specs["AAPL"]["tick_size"])))
        results = up.submit([
            {"symbol": "AAPL", "side": "BUY", "qty": 40, "strategy_id": "browser", "client_key": "market"},
            {"symbol": "MSFT", "side": "SELL", "qty": 60, "split": "TWAP", "horizon_s": 2, "strategy_id": "browser", "client_key": "twap"},
        ])
        limit = up.submit_nowait([{"symbol": "AAPL", "side": "BUY", "qty": 20, "order_type": "LIMIT", "price": resting, "strategy_id": "browser", "client_key": "rest"}])[0]
        up.cli("escape", limit["correlation_id"], "--timeout", "30")
        cids = [r["correlation_id"] for r in results] + [limit["correlation_id"]]
        page = tmp_path / "report.html"
        res = up.cli("report", "--batch", ",".join(cids), "--html", str(page), "--json")
        assert res.returncode == 0, res.stderr
    html = page.read_text()
    assert "<script" not in html  # the report itself stays script-free; only the test's copy probes
    png = tmp_path / "report.png"
    shot = _chromium(f"--screenshot={png}", "--window-size=1100,2600", page.as_uri())
    assert png.exists() and png.stat().st_size > 20_000, shot.stderr[-500:]
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", probe_page.as_uri()).stdout.decode()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), dom[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    charts = probe["charts"]
    assert len(charts) == 3, charts
    for chart in charts:
        for cls in chart["legend"]:
            assert chart["rendered"][cls] > 0, f"{chart['id']}: the legend shows {cls!r}, nothing of it is rendered ({chart})"
        assert {"order-life", "ref-arrival"} <= set(chart["legend"]), chart  # MARKET children show too
        assert chart["rendered"]["order-life"] >= 1
    assert sum("fill" in c["legend"] for c in charts) == 2  # the two that traded; the escaped LIMIT did not
    assert sum(c["rendered"]["order"] > 0 for c in charts) >= 1  # the LIMIT child's price line
    assert len(probe["latency"]) == 3
    traded = [row for row in probe["latency"] if row.split("(")[0].count("n/a") == 0]
    assert len(traded) >= 2, probe["latency"]  # ack / first fill / done, every figure there
    for row in traded:
        assert len(re.findall(r"\d+\.\d", row.split("(")[0])) == 3, row
