"""``python -m jtrades.cli`` runs the CLI (tests use it to run the installed code as a process)."""

from jtrades.cli.main import main

main()
