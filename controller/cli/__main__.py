"""`python -m controller.cli`: the same as the `autonomy` entry point (including its exit workaround)."""

from controller.cli import main

main()
