"""`python -m controller.cli`: the same as the `autonomy` entry point (including its exit workaround)."""

from autonomy_controller.controller.cli import main

main()
