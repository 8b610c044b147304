"""Reading YAML inputs and turning pydantic's errors into messages that say where and how to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from simulator.core.errors import RoutesimError, did_you_mean


def read_yaml(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise RoutesimError(f"file not found: {path}", fix="check the path")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise RoutesimError(f"not valid YAML: {problem}", where=where,
                            fix="check indentation and quoting (predicates with ':' need quotes)") from None
    except UnicodeDecodeError:
        raise RoutesimError("not a UTF-8 text file", where=str(path), fix="save the file as UTF-8") from None


def _key_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _fields_at(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """The keys allowed where an unknown key was found, to suggest the nearest one."""
    current: Any = model
    for part in location[:-1]:
        field = getattr(current, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is not None:  # other parts are list positions or dict keys such as a model's name
            current = _model_in(field.annotation)
    return list(getattr(current, "model_fields", {})) if current else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_in(argument)
        if found:
            return found
    return None


def from_pydantic_error(error: ValidationError, model: type[BaseModel], *, file: Path | str) -> RoutesimError:
    problems = []
    for item in error.errors():
        location = tuple(part for part in item["loc"] if not (isinstance(part, str) and "[" in part))
        key = _key_path(location)
        if item["type"] == "extra_forbidden":
            allowed = _fields_at(model, location)
            hint = did_you_mean(str(location[-1]), allowed)
            problems.append(f"unknown key '{key}'.{hint} Allowed here: {', '.join(allowed)}")
        elif item["type"] == "missing":
            problems.append(f"missing key '{key}'")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"key '{key}': {message} (got {item.get('input')!r})")
    return RoutesimError(f"{file} is not valid:\n  - " + "\n  - ".join(problems), where=str(file),
                         fix="see 'Scenario reference' and 'Price sheets' in the README")
