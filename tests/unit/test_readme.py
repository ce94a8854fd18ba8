"""The README is the user's contract: every reason code, exit code and command is in it."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from jetexec.cli.app import app
from jetexec.cli.common import ExitCode
from schemas.enums import ReasonCode

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_reason_code_is_in_the_readme():
    missing = [c.value for c in ReasonCode if f"`{c.value}`" not in README]
    assert missing == [], f"README lacks the reason codes {missing}"


def test_the_exit_code_table_is_the_cli_s():
    table = README.split("### Exit codes", 1)[1].split("###", 1)[0]
    documented = {int(n) for row in re.findall(r"^\| ([\d /]+) \|", table, re.M) for n in row.split("/")}
    assert documented == {int(c) for c in ExitCode}


def test_every_command_is_in_the_readme():
    cli = typer.main.get_command(app)
    for name in cli.commands:
        assert f"`jetexec {name}" in README, f"`jetexec {name}` is not in the README"
