"""The building blocks of Atelier's declared settings schema, and one sentence per fault.

Every configuration table is a typed class (a frozen dataclass or a pydantic model) whose fields
carry their type, range and default, validated by pydantic (https://docs.pydantic.dev): one pass
over the whole file finds every fault, each with the path of its key (`limits.max_queued`,
`gpus[1].device`, `models.my-model.steps`). The field types here are strict: TOML's `"30"` is not
the number 30, `1` is not `true`, and `true` is not a number.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # an integer is a number too
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
Name = Annotated[str, Strict(), Field(min_length=1)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]

# For the dataclasses that are tables: unknown keys are faults, not silently ignored.
TABLE = ConfigDict(extra="forbid")


class SettingsProblems(ValueError):
    """A configuration table with faults; `problems` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(" ".join(problems))


def validate_table(kind: Any, table: Any, *location: str) -> Any:
    """`table` (a parsed TOML value) as a `kind` (a table class or any type); raises
    `SettingsProblems` naming every fault, each key's path starting with `location` (such as
    "speed")."""
    try:
        return TypeAdapter(kind).validate_python(table)
    except ValidationError as error:
        raise SettingsProblems(problems_of(error, location)) from None


def problems_of(error: ValidationError, location: tuple[str, ...] = ()) -> list[str]:
    """One sentence per fault in `error`, unknown keys first, each naming its key's path."""
    problems = [_sentence(key_path((*location, *item["loc"])), item) for item in error.errors()]
    return sorted(problems, key=lambda p: not p.startswith("Unknown setting"))


def key_path(location: tuple[Any, ...]) -> str:
    """`("gpus", 1, "device")` → `gpus[1].device`; pydantic's own markers are dropped."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (isinstance(part, str) and (part.startswith(("function-", "literal[")))):
            path += f".{part}" if path else str(part)
    return path


_KINDS = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dataclass_type": "a table",
}
_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}


def toml_value(value: Any) -> str:
    """`value` as it is written in TOML (`true`, `"text"`, `[1, 2]`), for messages about the
    file: a person fixes what they wrote, not Python's spelling of it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + (f" {pairs} " if pairs else "") + "}"
    return str(value)


def _sentence(path: str, item: Any) -> str:
    kind, found = item["type"], toml_value(item.get("input"))
    context = item.get("ctx") or {}
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"Unknown setting `{path}`."
    if kind in ("missing", "missing_argument"):
        return f"`{path}` is required."
    if kind in _KINDS:
        return f"`{path}` should be {_KINDS[kind]}, not {found}."
    if kind in _BOUNDS:
        words, bound = _BOUNDS[kind]
        limit = context[bound]
        return f"`{path}` should be {words} {limit:g}, not {found}."
    if kind in ("literal_error", "enum"):
        expected = context["expected"].replace("'", '"')  # TOML's quotes
        return f"`{path}` should be one of {expected}, not {found}."
    if kind in ("string_too_short", "too_short") and context.get("min_length") == 1:
        return f"`{path}` should not be empty."
    if kind == "value_error":
        return f"`{path}`: {context.get('error', item['msg'])}"
    return f"`{path}`: {item['msg']}."
