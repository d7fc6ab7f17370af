"""How config files are read and how their errors read: `file: key.path: message`, so every loader names the key."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class LevelConfigError(ValueError):
    """Every problem found in the level config, each as 'file: key: message'."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid level config:\n  " + "\n  ".join(errors))
        self.errors = errors


def error_lines(exc: ValidationError) -> list[str]:
    """`key.path: message` per error; `(top level)` when the document itself is wrong."""
    return [f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]


def read_yaml_model(path: Path, model: type[M], error: type[Exception]) -> M | None:
    """The file validated as `model`, None when it does not exist (each caller decides what absence means).

    An empty file is an empty mapping. Raises `error` (the caller's own class) for anything else, naming the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"{path}: unreadable: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    try:
        return model.model_validate(document if document is not None else {})
    except ValidationError as exc:
        raise error("; ".join(f"{path}: {line}" for line in error_lines(exc))) from None
