"""The ``jetexec`` command line (one package: :mod:`jetexec.cli.app` assembles the command groups).
Its JSON input and output are a public contract (README)."""

from jetexec.cli.app import app, main

__all__ = ["app", "main"]
