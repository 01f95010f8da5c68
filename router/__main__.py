"""`python -m router` runs the CLI."""

from router.cli import main

main()
