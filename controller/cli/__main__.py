"""`python -m controller.cli`: the same as the `autonomy` entry point."""

from controller.cli import app

app()
