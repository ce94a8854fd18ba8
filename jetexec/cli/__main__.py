"""``python -m jetexec.cli``: what the supervisor runs for each worker, and the tests for the CLI."""

from jetexec.cli.app import main

main()
