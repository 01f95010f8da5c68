"""`python -m router.cli` runs the CLI."""

from router.cli import main

main()
