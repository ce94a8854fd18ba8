"""``jetexec.toml``: one validated configuration for a deployment, with environment overrides.

Precedence, lowest first: the defaults (the ones the workers use without configuration), the file
(``--config``, else ``$JETEXEC_CONFIG``, else ``./jetexec.toml`` when it exists), the older
whole-section JSON variables (``JETEXEC_PRECHECK_CONFIG`` …, still honoured), one variable per key
(``JETEXEC__RISK__DAILY_TRADE_LIMIT=50``: ``JETEXEC__`` then the key path, ``__`` between parts), and
last the command's own flags (``jetexec up --port``).

:func:`load` validates everything at once and raises :class:`ConfigError` naming the key, the bad
value and where it came from. :func:`worker_env` turns the result into the environment variables the
workers already read (``JETEXEC_PRECHECK_CONFIG`` and the others), so a worker never sees a value
that was not validated here. Every key is documented in ``docs/config.md`` (a test keeps the two in
step). Pure: the file text and the environment are arguments; nothing here touches NATS.
"""

from __future__ import annotations

import json
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import msgspec

from core.adjust import AdjustConfig
from core.coordinator import CoordinatorConfig
from core.execution_fsm import STAGE_TIMEOUT_MS
from core.precheck import PrecheckConfig
from core.risk import load_risk_hook
from core.split import SplitConfig
from core.paper_venue import VenueConfig
from schemas.enums import ExecutionState

DEFAULT_FILE = "jetexec.toml"
ENV_PREFIX = "JETEXEC__"
MODES = ("paper", "shadow", "live")
SECRET_WORDS = ("password", "token", "secret", "passphrase")

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosInt = Annotated[int, msgspec.Meta(gt=0)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class _NonNegative:
    """Marks a Decimal setting that must be >= 0 (msgspec constrains only int and float)."""


NonNegDec = Annotated[Decimal, _NonNegative]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]

_PC = PrecheckConfig()
_CC = CoordinatorConfig()


class ConfigError(ValueError):
    """One bad setting: the key (dotted path), its value and where it came from."""

    def __init__(self, key: str, value: Any, problem: str, source: str | None = None) -> None:
        shown = json.dumps(value, default=str) if value is not _MISSING else ""
        where = f" (from {source})" if source else ""
        text = f"{key} = {shown}{where}: {problem}" if shown else f"{key}{where}: {problem}"
        super().__init__(text)
        self.key, self.value, self.problem, self.source = key, value, problem, source


_MISSING = object()


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class Server(_Section):
    host: str = "127.0.0.1"
    port: Port = 4222
    data_dir: str = ".jetexec"
    metrics_port_base: Port | None = None  # each worker serves /metrics on base + i


class Nats(_Section):
    url: str | None = None  # default: nats://<server.host>:<server.port>
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None
    nkey_seed: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


class SymbolRisk(_Section):
    max_position_qty: NonNegDec | None = None
    price_collar_pct: NonNegDec | None = None


class StrategyRisk(_Section):
    max_position_qty: NonNegDec | None = None
    daily_trade_limit: NonNegInt | None = None
    daily_notional_limit: NonNegDec | None = None


class RiskHook(_Section):
    kind: str = "null"
    reason: str = ""
    symbol_allowlist: list[str] | None = None
    max_qty: Decimal | None = None
    pause_symbols: list[str] | None = None


class Risk(_Section):
    max_position_qty: NonNegDec = _PC.max_position_qty
    daily_trade_limit: NonNegInt = _PC.daily_trade_limit
    daily_notional_limit: NonNegDec = _PC.daily_notional_limit
    price_collar_pct: NonNegDec = _PC.price_collar_pct
    available_capital: NonNegDec = _PC.available_capital
    symbols: dict[str, SymbolRisk] = {}
    strategies: dict[str, StrategyRisk] = {}
    hook: RiskHook | None = None


def _timeout(state: ExecutionState) -> int:
    return _CC.stage_timeout_ms[state]


class Timeouts(_Section):
    precheck_ms: PosInt = _timeout(ExecutionState.PRECHECK)
    splitting_ms: PosInt = _timeout(ExecutionState.SPLITTING)
    sending_ms: PosInt = _timeout(ExecutionState.SENDING)
    monitoring_ms: PosInt = _timeout(ExecutionState.MONITORING)
    adjusting_ms: PosInt = _timeout(ExecutionState.ADJUSTING)
    escaping_ms: PosInt = _timeout(ExecutionState.ESCAPING)


class Coordinator(_Section):
    fill_delay_warn_s: PosFloat = _CC.fill_delay_warn_s
    max_adjust_rounds: NonNegInt = _CC.max_adjust_rounds


class Ledger(_Section):
    recon_interval_s: NonNegFloat = 30.0  # 0 = no periodic reconciliation
    snapshot_interval_s: NonNegFloat = 60.0
    recon_grace_s: NonNegFloat = 2.0


class ConfigFile(_Section):
    """The file's layout (``docs/config.md``). ``split``, ``adjust`` and each venue's settings are
    checked against the worker's own settings type (``core.split.SplitConfig`` …)."""

    mode: str = "paper"
    server: Server = Server()
    nats: Nats = Nats()
    risk: Risk = Risk()
    timeouts: Timeouts = Timeouts()
    coordinator: Coordinator = Coordinator()
    split: dict[str, Any] = {}
    adjust: dict[str, Any] = {}
    ledger: Ledger = Ledger()
    venues: dict[str, dict[str, Any]] = {}


# ---- venues ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VenueKind:
    """What a ``[venues.<name>]`` table of this ``kind`` is: whether it trades real money, how its
    settings are checked, which worker serves it and the environment that worker reads."""

    live_capable: bool
    worker: str | None
    settings: Callable[[dict[str, Any]], Any]  # raises ValueError / msgspec.ValidationError
    env: Callable[[dict[str, Any]], dict[str, str]]


def _paper_settings(settings: dict[str, Any]) -> VenueConfig:
    allowed = set(VenueConfig.__struct_fields__)
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise _Unknown(unknown[0], sorted(allowed))
    # Exactly what the paper exchange does with JETEXEC_VENUE_CONFIG (a strict conversion).
    return msgspec.convert(json.loads(_paper_json(settings)), VenueConfig) if settings else VenueConfig()


def _paper_json(settings: dict[str, Any]) -> str:
    """Decimals as JSON strings (exact), except where VenueConfig wants a float (seconds, latencies):
    the paper exchange converts strictly, and a string is not a float."""
    hints = typing.get_type_hints(VenueConfig)
    out: dict[str, Any] = {}
    for k, v in settings.items():
        hint = hints.get(k)
        if hint is float and isinstance(v, Decimal):
            v = float(v)
        elif typing.get_origin(hint) is tuple and all(a is float for a in typing.get_args(hint)) and isinstance(v, (list, tuple)):
            v = [float(x) if isinstance(x, Decimal) else x for x in v]
        out[k] = v
    return _json(out)


def _paper_env(settings: dict[str, Any]) -> dict[str, str]:
    return {"JETEXEC_VENUE_CONFIG": _paper_json(settings)} if settings else {}


VENUE_KINDS: dict[str, VenueKind] = {
    "paper": VenueKind(live_capable=False, worker="paper-exchange", settings=_paper_settings, env=_paper_env),
    # A FIX venue's session, symbol map and limits are the venues configuration of docs/venues.md
    # (JETEXEC_VENUES / JETEXEC_VENUES_FILE, checked by core.venue_config.parse_venues).
    "fix": VenueKind(live_capable=True, worker="venue-fix", settings=lambda s: s, env=lambda s: {}),
}


def _env_venues(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The venues of ``JETEXEC_VENUES`` / ``JETEXEC_VENUES_FILE`` (docs/venues.md), by kind."""
    from core.venue_config import VenueConfigError, parse_venues

    raw = env.get("JETEXEC_VENUES")
    if not raw and env.get("JETEXEC_VENUES_FILE"):
        try:
            raw = Path(env["JETEXEC_VENUES_FILE"]).read_text()
        except OSError as exc:
            raise ConfigError("venues", env["JETEXEC_VENUES_FILE"], f"cannot read JETEXEC_VENUES_FILE: {exc}", "JETEXEC_VENUES_FILE") from None
    if not raw:
        return {}
    try:
        parsed = parse_venues(json.loads(raw))
    except (ValueError, VenueConfigError) as exc:
        raise ConfigError("venues", raw[:80], str(exc), "JETEXEC_VENUES") from None
    return {vid: {"kind": v.kind} for vid, v in parsed.venues.items()}


class _Unknown(ValueError):
    def __init__(self, key: str, allowed: list[str]) -> None:
        super().__init__(f"unknown key; allowed: {', '.join(allowed)}")
        self.key = key


# ---- the loaded configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    file: ConfigFile
    path: Path | None  # the file read, if any
    sources: dict[str, str]  # dotted key -> where its value came from (absent: default)
    precheck: PrecheckConfig
    risk_hook: dict[str, Any] | None
    coordinator: CoordinatorConfig
    split: SplitConfig
    adjust: AdjustConfig

    @property
    def mode(self) -> str:
        return self.file.mode

    env_venues: dict[str, dict[str, Any]] = field(default_factory=dict)  # from JETEXEC_VENUES

    @property
    def venues(self) -> dict[str, dict[str, Any]]:
        """Every configured venue (``paper`` when none is), ``kind`` filled in."""
        if self.env_venues and not self.file.venues:
            return dict(self.env_venues)
        return {**self.env_venues, **_venues(self.file)}

    @property
    def live_venues(self) -> list[str]:
        return sorted(name for name, v in self.venues.items() if VENUE_KINDS[v["kind"]].live_capable)

    @property
    def nats_url(self) -> str:
        return self.file.nats.url or f"nats://{self.file.server.host}:{self.file.server.port}"

    def workers(self, default: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
        """``default`` (the supervisor's list) less the venue workers no configured venue needs."""
        venue_workers = {k.worker for k in VENUE_KINDS.values() if k.worker}
        wanted = {VENUE_KINDS[v["kind"]].worker for v in self.venues.values()}
        return tuple((name, n) for name, n in default if name not in venue_workers or name in wanted)


def _venues(f: ConfigFile) -> dict[str, dict[str, Any]]:
    if not f.venues:
        return {"paper": {"kind": "paper"}}
    return {name: {"kind": v.get("kind", name), **{k: x for k, x in v.items() if k != "kind"}} for name, v in f.venues.items()}


def find_path(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """``--config``, else ``$JETEXEC_CONFIG``, else ``./jetexec.toml`` when it exists."""
    if explicit:
        return Path(explicit)
    if env.get("JETEXEC_CONFIG"):
        return Path(env["JETEXEC_CONFIG"])
    return Path(DEFAULT_FILE) if Path(DEFAULT_FILE).is_file() else None


def load(path: Path | None = None, env: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None, text: str | None = None) -> Config:
    """Merge defaults, file, environment and flags, and validate. Raises :class:`ConfigError`."""
    env = {} if env is None else env
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if text is None and path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError("config file", str(path), exc.strerror or type(exc).__name__) from None
    if text is not None:
        where = str(path) if path is not None else DEFAULT_FILE
        try:
            doc = tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(where, _MISSING, f"not valid TOML: {exc}") from None
        _merge(raw, doc, sources, where)
    for var, apply in _LEGACY.items():
        if env.get(var) not in (None, ""):
            _merge(raw, apply(var, env[var]), sources, var)
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and env[var] != "":
            path_parts = [p for p in var[len(ENV_PREFIX):].split("__") if p]
            _merge(raw, _nest(_key_path(path_parts), _env_value(env[var])), sources, var)
    for key, value in (flags or {}).items():
        if value is not None:
            _merge(raw, _nest(key.split("."), value), sources, f"--{key.split('.')[-1].replace('_', '-')}")
    return _validate(raw, sources, path, env)


def _key_path(parts: list[str]) -> list[str]:
    """Env var parts → key path: section, field and venue names are lower-cased; the names under
    ``risk.symbols`` and ``risk.strategies`` (symbols, strategy ids) keep their case."""
    out: list[str] = []
    for p in parts:
        keep = len(out) == 2 and out[0] == "risk" and out[1] in ("symbols", "strategies")
        out.append(p if keep else p.lower())
    return out


def _env_value(text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return text


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    doc: Any = value
    for p in reversed(path):
        doc = {p: doc}
    return doc


def _merge(into: dict[str, Any], new: Mapping[str, Any], sources: dict[str, str], source: str, prefix: str = "") -> None:
    for k, v in new.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _merge(into[k], v, sources, source, key + ".")
        elif isinstance(v, Mapping):
            into[k] = {}
            _merge(into[k], v, sources, source, key + ".")
            sources.setdefault(key, source)
        else:
            into[k] = v
            sources[key] = source
            for stale in [s for s in sources if s.startswith(key + ".")]:
                del sources[stale]


def _lookup(raw: Mapping[str, Any], key: str) -> Any:
    cur: Any = raw
    for part in re.split(r"\.|\[(\d+)\]", key):
        if part in (None, ""):
            continue
        if isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        elif isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


def _source(sources: Mapping[str, str], key: str) -> str | None:
    probe = key
    while probe:
        if probe in sources:
            return sources[probe]
        probe = probe.rpartition(".")[0]
    return None


def _error(raw: Mapping[str, Any], sources: Mapping[str, str], key: str, problem: str) -> ConfigError:
    return ConfigError(key, _lookup(raw, key), problem, _source(sources, key))


_AT = re.compile(r"^(.*?)(?: - at `\$\.?(.*)`)?$", re.S)


def _from_validation(exc: msgspec.ValidationError, raw: Mapping[str, Any], sources: Mapping[str, str], base: str = "") -> ConfigError:
    m = _AT.match(str(exc))
    problem, at = (m.group(1), m.group(2)) if m else (str(exc), None)
    unknown = re.match(r"Object contains unknown field `(.+)`", problem)
    key = base + (at or "")
    if not at and base:  # an error of the settings type itself (__post_init__): find the key it names
        key = _named_key(raw, base.strip("."), problem)
    if unknown:
        key = f"{key}.{unknown.group(1)}" if key else unknown.group(1)
        problem = "unknown key (see docs/config.md)"
    return _error(raw, sources, key.strip(".") or base.strip(".") or "config", problem[:1].lower() + problem[1:])


_NAMED_TABLES = (("risk", "symbols", SymbolRisk), ("risk", "strategies", StrategyRisk))


def _convert(raw: dict[str, Any], sources: dict[str, str]) -> ConfigFile:
    # Tables keyed by a name (a symbol, a strategy id) first, one entry at a time: msgspec reports a
    # bad value inside a dict as `[...]`, and the error must name the symbol or strategy.
    for section, table, type_ in _NAMED_TABLES:
        entries = _lookup(raw, f"{section}.{table}")
        if isinstance(entries, Mapping):
            for name, entry in entries.items():
                try:
                    _non_negative(msgspec.convert(entry, type_, strict=False), f"{section}.{table}.{name}.", raw, sources)
                except msgspec.ValidationError as exc:
                    raise _from_validation(exc, raw, sources, f"{section}.{table}.{name}.") from None
    try:
        f = msgspec.convert(raw, ConfigFile, strict=False)
    except msgspec.ValidationError as exc:
        raise _from_validation(exc, raw, sources) from None
    _non_negative(f.risk, "risk.", raw, sources)
    return f


def _non_negative(obj: Any, prefix: str, raw, sources) -> None:
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for name, hint in hints.items():
        value = getattr(obj, name)
        if _NonNegative in _markers(hint) and isinstance(value, Decimal) and not (value.is_finite() and value >= 0):
            raise _error(raw, sources, prefix + name, "must be a number >= 0")


def _markers(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) is Annotated:
        return hint.__metadata__
    return tuple(m for arg in typing.get_args(hint) for m in _markers(arg))


def _validate(raw: dict[str, Any], sources: dict[str, str], path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    f = _convert(raw, sources)
    if f.mode.lower() not in MODES:
        raise _error(raw, sources, "mode", f"must be one of {', '.join(MODES)}")
    f = msgspec.structs.replace(f, mode=f.mode.lower())
    precheck = _section(raw, sources, "risk", lambda: msgspec.convert(json.loads(_json(precheck_json(f.risk))), PrecheckConfig, strict=False))
    hook = _hook_json(f.risk.hook)
    _section(raw, sources, "risk.hook", lambda: load_risk_hook(hook))
    coordinator = _section(raw, sources, "timeouts", lambda: CoordinatorConfig.from_mapping(coordinator_json(f)))
    split = _typed_section(raw, sources, "split", f.split, SplitConfig)
    adjust = _typed_section(raw, sources, "adjust", f.adjust, AdjustConfig)
    for name, venue in _venues(f).items():
        kind = VENUE_KINDS.get(str(venue["kind"]))
        if kind is None:
            raise _error(raw, sources, f"venues.{name}.kind" if "kind" in f.venues.get(name, {}) else f"venues.{name}", f"unknown venue kind {venue['kind']!r}; known: {', '.join(sorted(VENUE_KINDS))}")
        settings = {k: v for k, v in venue.items() if k != "kind"}
        try:
            kind.settings(settings)
        except _Unknown as exc:
            raise _error(raw, sources, f"venues.{name}.{exc.key}", str(exc)) from None
        except msgspec.ValidationError as exc:
            raise _from_validation(exc, raw, sources, f"venues.{name}.") from None
        except (ValueError, TypeError) as exc:
            raise _error(raw, sources, f"venues.{name}", str(exc)) from None
    cfg = Config(file=f, path=path, sources=sources, precheck=precheck, risk_hook=hook, coordinator=coordinator, split=split, adjust=adjust, env_venues=_env_venues(env or {}))
    if cfg.mode == "live" and not cfg.live_venues:
        kinds = ", ".join(f"{n} ({v['kind']})" for n, v in cfg.venues.items())
        live_kinds = ", ".join(sorted(k for k, v in VENUE_KINDS.items() if v.live_capable)) or "none is installed"
        raise ConfigError(
            "mode", "live",
            f"live mode needs a live venue, and the configured venues are only {kinds}: the paper exchange is simulated. "
            f"Add a [venues.<name>] table of a live kind ({live_kinds}), or run paper/shadow",
            _source(sources, "mode"),
        )
    return cfg


def _section(raw, sources, key: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except msgspec.ValidationError as exc:
        raise _from_validation(exc, raw, sources, key + ".") from None
    except (ValueError, TypeError) as exc:
        raise _error(raw, sources, _named_key(raw, key, str(exc)), str(exc)) from None


def _typed_section(raw, sources, key: str, values: dict[str, Any], type_: type) -> Any:
    allowed = sorted(type_.__struct_fields__)
    for k in values:
        if k not in allowed:
            raise _error(raw, sources, f"{key}.{k}", f"unknown key; allowed: {', '.join(allowed)}")
    return _section(raw, sources, key, lambda: msgspec.convert(json.loads(_json(values)), type_, strict=False))


def _named_key(raw: Mapping[str, Any], base: str, message: str) -> str:
    """The key a core settings error names (``max_children must be >= 1`` → ``split.max_children``)."""
    section = _lookup(raw, base)
    if isinstance(section, Mapping):
        for k in sorted(section, key=len, reverse=True):
            if re.search(rf"\b{re.escape(k)}\b", message):
                return f"{base}.{k}"
    return base


# ---- what the workers read ---------------------------------------------------------------------


def _json(obj: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


def precheck_json(risk: Risk) -> dict[str, Any]:
    """``[risk]`` in the shape of ``JETEXEC_PRECHECK_CONFIG`` (:class:`core.precheck.PrecheckConfig`)."""
    out: dict[str, Any] = {
        "max_position_qty": risk.max_position_qty,
        "daily_trade_limit": risk.daily_trade_limit,
        "daily_notional_limit": risk.daily_notional_limit,
        "price_collar_pct": risk.price_collar_pct,
        "available_capital": risk.available_capital,
    }
    positions = {s: r.max_position_qty for s, r in risk.symbols.items() if r.max_position_qty is not None}
    collars = {s: r.price_collar_pct for s, r in risk.symbols.items() if r.price_collar_pct is not None}
    strategies = {s: {k: v for k, v in msgspec.structs.asdict(r).items() if v is not None} for s, r in risk.strategies.items()}
    if positions:
        out["max_position_overrides"] = positions
    if collars:
        out["price_collar_overrides"] = collars
    if strategies:
        out["strategy_limits"] = strategies
    return out


def _hook_json(hook: RiskHook | None) -> dict[str, Any] | None:
    if hook is None:
        return None
    return {k: v for k, v in msgspec.structs.asdict(hook).items() if v not in (None, "")}


def coordinator_json(f: ConfigFile) -> dict[str, Any]:
    t = f.timeouts
    return {
        "stage_timeout_ms": {s.value: getattr(t, f"{s.value.lower()}_ms") for s in STAGE_TIMEOUT_MS},
        "fill_delay_warn_s": f.coordinator.fill_delay_warn_s,
        "max_adjust_rounds": f.coordinator.max_adjust_rounds,
    }


def worker_env(cfg: Config) -> dict[str, str]:
    """The environment ``jetexec up`` gives every worker (the variables they read today)."""
    f = cfg.file
    env = {
        "JETEXEC_MODE": cfg.mode.upper(),
        "JETEXEC_PRECHECK_CONFIG": _json(precheck_json(f.risk)),
        "JETEXEC_RISK_HOOK": _json(cfg.risk_hook),
        "JETEXEC_COORDINATOR_CONFIG": _json(coordinator_json(f)),
        "JETEXEC_SPLIT_CONFIG": _json(f.split),
        "JETEXEC_ADJUST_CONFIG": _json(f.adjust),
        "JETEXEC_RECON_INTERVAL_S": str(f.ledger.recon_interval_s),
        "JETEXEC_SNAPSHOT_INTERVAL_S": str(f.ledger.snapshot_interval_s),
        "JETEXEC_RECON_GRACE_S": str(f.ledger.recon_grace_s),
        "JETEXEC_LIVE_VENUES": ",".join(cfg.live_venues),
    }
    if cfg.mode == "live":
        env["JETEXEC_LIVE_CONFIG_FLAG"] = "1"
    if f.server.metrics_port_base is not None:
        env["JETEXEC_METRICS_PORT_BASE"] = str(f.server.metrics_port_base)
    for venue in cfg.venues.values():
        env.update(VENUE_KINDS[venue["kind"]].env({k: v for k, v in venue.items() if k != "kind"}))
    return env


def nats_env(cfg: Config) -> dict[str, str]:
    """``[nats]`` as the ``JETEXEC_NATS_*`` variables :class:`bus.settings.NatsSettings` reads."""
    n = cfg.file.nats
    pairs = {"URL": cfg.nats_url, "USER": n.user, "PASSWORD": n.password, "TOKEN": n.token, "CREDS": n.creds, "NKEY_SEED": n.nkey_seed, "TLS_CA": n.tls_ca, "TLS_CERT": n.tls_cert, "TLS_KEY": n.tls_key}
    return {f"JETEXEC_NATS_{k}": str(v) for k, v in pairs.items() if v}


# ---- showing it --------------------------------------------------------------------------------


def effective(cfg: Config) -> dict[str, Any]:
    """The whole effective configuration as plain data (decimals as strings, secrets masked)."""
    doc = json.loads(_json(cfg.file))
    doc["split"] = json.loads(_json(cfg.split))
    doc["adjust"] = json.loads(_json(cfg.adjust))
    venues = {}
    for name, venue in cfg.venues.items():
        settings = VENUE_KINDS[venue["kind"]].settings({k: v for k, v in venue.items() if k != "kind"})
        given = set(venue)
        shown = {k: v for k, v in json.loads(_json(settings)).items() if k != "symbols" or k in given} if isinstance(settings, msgspec.Struct) else {}
        venues[name] = {"kind": venue["kind"], **shown}
    doc["venues"] = venues
    for key in ("hook", "symbols", "strategies"):
        if not doc["risk"].get(key):
            doc["risk"].pop(key, None)
    doc["nats"]["url"] = cfg.nats_url
    return mask(_drop_none(doc))


def mask(doc: Any, key: str = "") -> Any:
    if isinstance(doc, dict):
        return {k: mask(v, k) for k, v in doc.items()}
    if isinstance(doc, list):
        return [mask(v, key) for v in doc]
    if isinstance(doc, str) and any(w in key.lower() for w in SECRET_WORDS) and doc:
        return "***"
    if isinstance(doc, str) and key == "url":
        return re.sub(r"//[^/@]*@", "//***@", doc)
    return doc


def _drop_none(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _drop_none(v) for k, v in doc.items() if v is not None}
    return doc


# ---- the older whole-section variables ---------------------------------------------------------


def _json_var(var: str, text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise ConfigError(var, text[:80], f"not valid JSON: {exc}") from None


def _obj(var: str, text: str) -> dict[str, Any]:
    doc = _json_var(var, text)
    if not isinstance(doc, dict):
        raise ConfigError(var, doc, "must be a JSON object")
    return doc


def _legacy_precheck(var: str, text: str) -> dict[str, Any]:
    doc = _obj(var, text)
    risk: dict[str, Any] = {}
    symbols: dict[str, dict[str, Any]] = {}
    for k, v in doc.items():
        if k == "max_position_overrides" and isinstance(v, dict):
            for s, q in v.items():
                symbols.setdefault(s, {})["max_position_qty"] = q
        elif k == "price_collar_overrides" and isinstance(v, dict):
            for s, q in v.items():
                symbols.setdefault(s, {})["price_collar_pct"] = q
        elif k == "strategy_limits":
            risk["strategies"] = v
        elif k in Risk.__struct_fields__ and k not in ("symbols", "strategies", "hook"):
            risk[k] = v
        else:
            raise ConfigError(f"{var}: {k}", v, f"unknown key; allowed: {', '.join(PrecheckConfig.__struct_fields__)}")
    if symbols:
        risk["symbols"] = symbols
    return {"risk": risk}


def _legacy_hook(var: str, text: str) -> dict[str, Any]:
    doc = _json_var(var, text)
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(var, doc, "must be a JSON object or null")
    return {"risk": {"hook": doc}}


def _legacy_coordinator(var: str, text: str) -> dict[str, Any]:
    doc = dict(_obj(var, text))
    out: dict[str, Any] = {}
    timeouts = doc.pop("stage_timeout_ms", None)
    if isinstance(timeouts, dict):
        out["timeouts"] = {f"{str(k).lower()}_ms": v for k, v in timeouts.items()}
    elif timeouts is not None:
        raise ConfigError(f"{var}: stage_timeout_ms", timeouts, "must be an object of state -> milliseconds")
    if doc:
        out["coordinator"] = doc
    return out


def _legacy_section(section: str) -> Callable[[str, str], dict[str, Any]]:
    return lambda var, text: {section: _obj(var, text)}


def _legacy_venue(var: str, text: str) -> dict[str, Any]:
    return {"venues": {"paper": _obj(var, text)}}


def _legacy_scalar(key: str, convert: Callable[[str], Any] = str) -> Callable[[str, str], dict[str, Any]]:
    def apply(var: str, text: str) -> dict[str, Any]:
        try:
            value = convert(text)
        except ValueError:
            value = text  # let validation name the key and the value
        return _nest(key.split("."), value)

    return apply


_LEGACY: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "JETEXEC_MODE": _legacy_scalar("mode", str.lower),
    "JETEXEC_PRECHECK_CONFIG": _legacy_precheck,
    "JETEXEC_RISK_HOOK": _legacy_hook,
    "JETEXEC_COORDINATOR_CONFIG": _legacy_coordinator,
    "JETEXEC_SPLIT_CONFIG": _legacy_section("split"),
    "JETEXEC_ADJUST_CONFIG": _legacy_section("adjust"),
    "JETEXEC_VENUE_CONFIG": _legacy_venue,
    "JETEXEC_VENUE_SEED": _legacy_scalar("venues.paper.seed", int),
    "JETEXEC_RECON_INTERVAL_S": _legacy_scalar("ledger.recon_interval_s", float),
    "JETEXEC_SNAPSHOT_INTERVAL_S": _legacy_scalar("ledger.snapshot_interval_s", float),
    "JETEXEC_RECON_GRACE_S": _legacy_scalar("ledger.recon_grace_s", float),
    "JETEXEC_METRICS_PORT_BASE": _legacy_scalar("server.metrics_port_base", int),
    "JETEXEC_NATS_URL": _legacy_scalar("nats.url"),
    "JETEXEC_NATS_USER": _legacy_scalar("nats.user"),
    "JETEXEC_NATS_PASSWORD": _legacy_scalar("nats.password"),
    "JETEXEC_NATS_TOKEN": _legacy_scalar("nats.token"),
    "JETEXEC_NATS_CREDS": _legacy_scalar("nats.creds"),
    "JETEXEC_NATS_NKEY_SEED": _legacy_scalar("nats.nkey_seed"),
    "JETEXEC_NATS_TLS_CA": _legacy_scalar("nats.tls_ca"),
    "JETEXEC_NATS_TLS_CERT": _legacy_scalar("nats.tls_cert"),
    "JETEXEC_NATS_TLS_KEY": _legacy_scalar("nats.tls_key"),
}
LEGACY_VARS = tuple(_LEGACY)
