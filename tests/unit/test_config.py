"""jetexec.toml: defaults equal the workers' own, every bad value is one error naming key, value and
source, the workers get exactly what was validated, secrets never show, docs/config.md is complete."""

from __future__ import annotations

import json
import re
import tomllib
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from core.adjust import AdjustConfig
from core.coordinator import CoordinatorConfig
from core.precheck import PrecheckConfig, StrategyLimits
from core.risk import load_risk_hook
from core.split import SplitConfig
from core.paper_venue import VenueConfig
from jetexec import config as jc

REPO = Path(__file__).resolve().parents[2]
D = Decimal


def load(text: str | None = None, env: dict[str, str] | None = None, flags: dict | None = None) -> jc.Config:
    return jc.load(Path("jetexec.toml") if text is not None else None, env or {}, flags, text=text)


def error(text: str | None = None, env: dict[str, str] | None = None, flags: dict | None = None) -> jc.ConfigError:
    with pytest.raises(jc.ConfigError) as err:
        load(text, env, flags)
    return err.value


def test_no_configuration_means_the_workers_defaults():
    cfg = load()
    assert cfg.precheck == PrecheckConfig()
    assert cfg.coordinator == CoordinatorConfig()
    assert cfg.split == SplitConfig() and cfg.adjust == AdjustConfig()
    assert cfg.mode == "paper" and cfg.venues == {"paper": {"kind": "paper"}} and cfg.live_venues == []
    assert cfg.nats_url == "nats://127.0.0.1:4222"


@pytest.mark.parametrize(
    "text, env, key, value, source",
    [
        (None, {"JETEXEC_PRECHECK_CONFIG": '{"daily_trade_limit": "lots"}'}, "risk.daily_trade_limit", "lots", "JETEXEC_PRECHECK_CONFIG"),
        ('[risk]\ndaily_trade_limit = "lots"\n', None, "risk.daily_trade_limit", "lots", "jetexec.toml"),
        (None, {"JETEXEC__RISK__DAILY_TRADE_LIMIT": "-3"}, "risk.daily_trade_limit", -3, "JETEXEC__RISK__DAILY_TRADE_LIMIT"),
        ("[risk]\ndaily_trade_limt = 3\n", None, "risk.daily_trade_limt", 3, "jetexec.toml"),
        ('[risk.symbols.AAPL]\nmax_position_qty = "-5"\n', None, "risk.symbols.AAPL.max_position_qty", "-5", "jetexec.toml"),
        ('[risk.strategies.s1]\ndaily_trade_limit = "x"\n', None, "risk.strategies.s1.daily_trade_limit", "x", "jetexec.toml"),
        (None, {"JETEXEC__SPLIT__MAX_CHILDREN": "0"}, "split.max_children", 0, "JETEXEC__SPLIT__MAX_CHILDREN"),
        ("[split]\nmax_childrn = 3\n", None, "split.max_childrn", 3, "jetexec.toml"),
        (None, {"JETEXEC__TIMEOUTS__PRECHECK_MS": "0"}, "timeouts.precheck_ms", 0, "JETEXEC__TIMEOUTS__PRECHECK_MS"),
        (None, {"JETEXEC_RISK_HOOK": '{"kind": "nope"}'}, "risk.hook.kind", "nope", "JETEXEC_RISK_HOOK"),
        (None, {"JETEXEC_VENUE_SEED": "abc"}, "venues.paper.seed", "abc", "JETEXEC_VENUE_SEED"),
        ("[venues.paper]\nseeed = 1\n", None, "venues.paper.seeed", 1, "jetexec.toml"),
        ('[venues.ny]\nkind = "nyse"\n', None, "venues.ny.kind", "nyse", "jetexec.toml"),
        (None, {"JETEXEC__ADJUST__SLIPPAGE_WARN_PCT": "0.9"}, "adjust.slippage_warn_pct", D("0.9"), "JETEXEC__ADJUST__SLIPPAGE_WARN_PCT"),
        ('mode = "yolo"\n', None, "mode", "yolo", "jetexec.toml"),
        (None, {"JETEXEC__SERVER__PORT": "70000"}, "server.port", 70000, "JETEXEC__SERVER__PORT"),
    ],
)
def test_a_bad_value_is_one_error_naming_key_value_and_source(text, env, key, value, source):
    e = error(text, env)
    assert (e.key, e.source) == (key, source), str(e)
    assert e.value == value, str(e)
    assert str(e).startswith(f"{key} = {json.dumps(value, default=str)} (from {source}): "), str(e)
    assert "\n" not in str(e)


def test_not_toml_and_not_json_are_named_too():
    assert "not valid TOML" in str(error("[risk\n"))
    e = error(env={"JETEXEC_SPLIT_CONFIG": "{max_children: 3}"})
    assert e.key == "JETEXEC_SPLIT_CONFIG" and "not valid JSON" in str(e)


def test_precedence_file_then_json_variables_then_key_variables_then_flags():
    text = "[risk]\ndaily_trade_limit = 10\nprice_collar_pct = 0.1\n[server]\nport = 5000\n"
    cfg = load(text, {"JETEXEC_PRECHECK_CONFIG": '{"daily_trade_limit": 20}', "JETEXEC__RISK__DAILY_TRADE_LIMIT": "30"}, {"server.port": 6000})
    assert cfg.precheck.daily_trade_limit == 30 and cfg.sources["risk.daily_trade_limit"] == "JETEXEC__RISK__DAILY_TRADE_LIMIT"
    assert cfg.precheck.price_collar_pct == D("0.1") and cfg.sources["risk.price_collar_pct"] == "jetexec.toml"
    assert cfg.file.server.port == 6000 and cfg.sources["server.port"] == "--port"
    assert cfg.nats_url == "nats://127.0.0.1:6000"


def test_per_strategy_and_per_symbol_limits_reach_precheck():
    text = """
[risk.symbols.AAPL]
max_position_qty = 500
price_collar_pct = "0.02"
[risk.strategies.s1]
daily_trade_limit = 7
max_position_qty = "50"
"""
    cfg = load(text, {"JETEXEC__RISK__STRATEGIES__s2__DAILY_NOTIONAL_LIMIT": '"1000.50"'})
    p = cfg.precheck
    assert p.max_position_overrides == {"AAPL": D(500)} and p.price_collar_overrides == {"AAPL": D("0.02")}
    assert p.strategy_limits == {"s1": StrategyLimits(daily_trade_limit=7, max_position_qty=D(50)), "s2": StrategyLimits(daily_notional_limit=D("1000.50"))}
    assert p.max_position_for("AAPL", "s1") == D(50) and p.daily_limits_for("s1") == (7, D(10_000_000))


def test_the_workers_read_back_exactly_what_was_validated():
    """worker_env → the parse each worker does today (see each handler's setup) → the same objects."""
    text = (REPO / "docs" / "jetexec.example.toml").read_text()
    cfg = load(text, {"JETEXEC__TIMEOUTS__MONITORING_MS": "2000", "JETEXEC__LEDGER__RECON_INTERVAL_S": "0"})
    env = jc.worker_env(cfg)
    assert msgspec.convert(json.loads(env["JETEXEC_PRECHECK_CONFIG"]), PrecheckConfig, strict=False) == cfg.precheck
    assert load_risk_hook(json.loads(env["JETEXEC_RISK_HOOK"])) == load_risk_hook(cfg.risk_hook)
    assert CoordinatorConfig.from_mapping(json.loads(env["JETEXEC_COORDINATOR_CONFIG"])) == cfg.coordinator
    assert cfg.coordinator.stage_timeout_ms[next(s for s in cfg.coordinator.stage_timeout_ms if s.value == "MONITORING")] == 2000
    assert msgspec.convert(json.loads(env["JETEXEC_SPLIT_CONFIG"]), SplitConfig, strict=False) == cfg.split
    assert msgspec.convert(json.loads(env["JETEXEC_VENUE_CONFIG"]), VenueConfig).seed == 7
    assert env["JETEXEC_RECON_INTERVAL_S"] == "0.0" and env["JETEXEC_MODE"] == "PAPER" and env["JETEXEC_LIVE_VENUES"] == ""
    assert "JETEXEC_LIVE_CONFIG_FLAG" not in env
    # and each value passes the same validation again (what `jetexec worker` does at start)
    again = load(None, env)
    assert (again.precheck, again.coordinator, again.split) == (cfg.precheck, cfg.coordinator, cfg.split)


def test_live_mode_with_only_the_paper_exchange_is_refused():
    for text, env, flags in (('mode = "live"\n', None, None), (None, {"JETEXEC_MODE": "LIVE"}, None), (None, None, {"mode": "live"})):
        e = error(text, env, flags)
        assert e.key == "mode" and "needs a live venue" in str(e) and "paper (paper)" in str(e)


def test_live_mode_is_accepted_when_a_live_capable_venue_is_configured(monkeypatch):
    """The check is 'the configured venues include a live-capable one', whatever that kind is."""
    kind = jc.VenueKind(live_capable=True, worker=None, settings=lambda s: None, env=lambda s: {"JETEXEC_TEST_VENUE": json.dumps(s)})
    monkeypatch.setitem(jc.VENUE_KINDS, "test-live", kind)
    cfg = load('mode = "live"\n[venues.broker]\nkind = "test-live"\nhost = "127.0.0.1"\n')
    assert cfg.live_venues == ["broker"]
    env = jc.worker_env(cfg)
    assert env["JETEXEC_LIVE_VENUES"] == "broker" and env["JETEXEC_LIVE_CONFIG_FLAG"] == "1" and env["JETEXEC_MODE"] == "LIVE"
    assert cfg.workers((("paper-exchange", 1), ("gateway", 1))) == (("gateway", 1),)  # no paper venue: no paper exchange


def test_secrets_are_masked_and_urls_lose_their_password():
    cfg = load('[nats]\nurl = "nats://op:hunter2@10.0.0.1:4222"\npassword = "hunter2"\ntoken = "t0k3n"\n', {"JETEXEC_NATS_USER": "op"})
    shown = json.dumps(jc.effective(cfg))
    assert "hunter2" not in shown and "t0k3n" not in shown
    doc = jc.effective(cfg)
    assert doc["nats"]["password"] == "***" and doc["nats"]["token"] == "***" and doc["nats"]["url"] == "nats://***@10.0.0.1:4222"
    assert doc["nats"]["user"] == "op"


def test_config_show_output_loads_back_to_the_same_configuration():
    import tomli_w

    cfg = load((REPO / "docs" / "jetexec.example.toml").read_text(), {"JETEXEC__RISK__STRATEGIES__s9__DAILY_TRADE_LIMIT": "3"})
    text = tomli_w.dumps(jc.effective(cfg))
    again = load(text)
    assert (again.precheck, again.coordinator, again.split, again.adjust, again.risk_hook, again.venues) == (cfg.precheck, cfg.coordinator, cfg.split, cfg.adjust, cfg.risk_hook, again.venues)
    assert jc.effective(again) == jc.effective(cfg)


def test_the_example_file_is_valid():
    cfg = load((REPO / "docs" / "jetexec.example.toml").read_text())
    assert cfg.precheck.strategy_limits["momentum"].daily_trade_limit == 500
    assert cfg.precheck.max_position_for("BTC-USD", "x") == D(2)


def _all_keys() -> set[str]:
    keys = {"mode"}
    f = jc.ConfigFile()
    for section in ("server", "nats", "timeouts", "coordinator", "ledger"):
        keys |= {f"{section}.{k}" for k in type(getattr(f, section)).__struct_fields__}
    keys |= {f"risk.{k}" for k in jc.Risk.__struct_fields__ if k not in ("symbols", "strategies", "hook")}
    keys |= {f"risk.symbols.<SYMBOL>.{k}" for k in jc.SymbolRisk.__struct_fields__}
    keys |= {f"risk.strategies.<STRATEGY_ID>.{k}" for k in jc.StrategyRisk.__struct_fields__}
    keys |= {f"risk.hook.{k}" for k in jc.RiskHook.__struct_fields__}
    keys |= {f"split.{k}" for k in SplitConfig.__struct_fields__} | {f"adjust.{k}" for k in AdjustConfig.__struct_fields__}
    keys |= {"venues.<NAME>.kind"} | {f"venues.<NAME>.{k}" for k in VenueConfig.__struct_fields__}
    return keys


def test_docs_config_md_documents_every_key_and_no_other():
    text = (REPO / "docs" / "config.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_<>A-Z.]+)` \|", text, re.M))
    keys = _all_keys()
    assert keys - documented == set(), f"undocumented keys: {sorted(keys - documented)}"
    assert documented - keys == set(), f"documented keys that do not exist: {sorted(documented - keys)}"
    for var in jc.LEGACY_VARS:
        if not var.startswith("JETEXEC_NATS_"):
            assert var in text, f"{var} not in docs/config.md"


def test_toml_decimals_are_exact():
    cfg = load("[risk]\nprice_collar_pct = 0.1\navailable_capital = 123456789.123456789\n")
    assert cfg.precheck.price_collar_pct == D("0.1") and cfg.precheck.available_capital == D("123456789.123456789")
    assert tomllib.loads("a = 0.1")["a"] == 0.1  # (why parse_float=Decimal matters: 0.1 is not exact as a float)
