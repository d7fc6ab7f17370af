"""Commands whose module is imported only when that command runs (or prints its own --help).

Why: the command modules reach the Temporal SDK, the ledger's SQLModel and the Anthropic SDK; importing them
all up front made every `autonomy` call, `--help` included, cost seconds. A group lists its commands from
their `Lazy` entries (name, one-line summary, panel) without importing anything; the command's module is
imported and its Typer command built from the function's signature the moment Click hands it arguments.
The function's docstring stays the command's full help (`autonomy evaluate --help`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from typer.core import MarkupMode, TyperCommand, TyperGroup
from typer.main import get_command_from_info
from typer.models import CommandInfo


@dataclass(frozen=True)
class Lazy:
    """One command: where its function lives ("module:function"), its summary line, its help panel."""

    target: str
    summary: str
    panel: str | None = None


class LazyCommand(TyperCommand):
    """Stands in for the real command in listings; becomes it when Click makes the command's context."""

    def __init__(self, name: str, entry: Lazy, rich_markup_mode: MarkupMode) -> None:
        super().__init__(name, short_help=entry.summary, rich_markup_mode=rich_markup_mode, rich_help_panel=entry.panel)
        self.entry = entry
        self._loaded: TyperCommand | None = None

    def load(self) -> TyperCommand:
        if self._loaded is None:
            module_name, _, function_name = self.entry.target.partition(":")
            function = getattr(importlib.import_module(module_name), function_name)
            info = CommandInfo(name=self.name, callback=function, short_help=self.entry.summary)
            command = get_command_from_info(info, pretty_exceptions_short=True, rich_markup_mode=self.rich_markup_mode)
            assert isinstance(command, TyperCommand)
            self._loaded = command
        return self._loaded

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        # Click runs `sub_ctx.command.invoke(sub_ctx)`: the context made here carries the real command.
        return self.load().make_context(info_name, args, parent=parent, **extra)


def lazy_group(commands: Mapping[str, Lazy]) -> type[TyperGroup]:
    """A TyperGroup class (for `typer.Typer(cls=...)`) that holds `commands` as LazyCommands."""

    class LazyGroup(TyperGroup):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            lazy = {name: LazyCommand(name, entry, self.rich_markup_mode) for name, entry in commands.items()}
            self.commands = {**lazy, **self.commands}  # listed in the map's order, sub-groups after

    return LazyGroup
