"""``jetexec config show | check | env``: the effective configuration, checked, secrets masked."""

from __future__ import annotations

import json
import os
from typing import Optional

import tomli_w
import typer

from jetexec import config as jconfig
from jetexec.cli.common import ConfigPath, ExitCode, fail, out

config_app = typer.Typer(no_args_is_help=True, help="The configuration (jetexec.toml + environment; docs/config.md)")


def _load(path: Optional[str]) -> jconfig.Config:
    try:
        return jconfig.load(jconfig.find_path(path, os.environ), os.environ)
    except jconfig.ConfigError as exc:
        fail(f"invalid configuration: {exc}", ExitCode.USAGE)


@config_app.command("show")
def show_cmd(
    config: Optional[str] = ConfigPath,
    as_json: bool = typer.Option(False, "--json", help="one JSON object instead of TOML"),
    sources: bool = typer.Option(False, "--sources", help="also say where each value that is not a default came from"),
) -> None:
    """Print the effective configuration (defaults, file, environment), secrets masked as ***."""
    cfg = _load(config)
    doc = jconfig.effective(cfg)
    if as_json:
        print(json.dumps({**doc, "_sources": cfg.sources} if sources else doc, separators=(",", ":")))
        return
    text = f"# effective configuration; file: {cfg.path or '(none: defaults and environment)'}\n" + tomli_w.dumps(doc)
    if sources:
        text += "\n# where the values that are not defaults came from\n" + "".join(f"#   {k} = {v}\n" for k, v in sorted(cfg.sources.items()))
    out.print(text, markup=False, highlight=False, end="")


@config_app.command("check")
def check_cmd(config: Optional[str] = ConfigPath) -> None:
    """Validate the configuration: exit 0 and say so, or one error naming the key (exit code 2)."""
    cfg = _load(config)
    out.print(f"configuration ok ({cfg.path or 'defaults and environment'}): mode {cfg.mode}, venues {', '.join(cfg.venues)}", markup=False)


@config_app.command("env")
def env_cmd(config: Optional[str] = ConfigPath, as_json: bool = typer.Option(False, "--json", help="one JSON object")) -> None:
    """The environment `jetexec up` gives every worker (for a Kubernetes ConfigMap or compose file)."""
    env = {k: _masked(v) for k, v in jconfig.worker_env(_load(config)).items()}
    if as_json:
        print(json.dumps(env, separators=(",", ":")))
        return
    for k, v in sorted(env.items()):
        print(f"{k}={v}")


def _masked(value: str) -> str:
    try:
        doc = json.loads(value)
    except ValueError:
        return value
    return json.dumps(jconfig.mask(doc), separators=(",", ":")) if isinstance(doc, dict) else value


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
