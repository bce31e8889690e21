"""Discord's documented limits on application commands, checked on a bulk overwrite (PUT) as
Discord checks them; refusals as in ``limits`` (400 / 50035 with an ``errors`` object).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from tests.discord.limits import FormErrors, Path, check_choices

# docs/interactions/application-commands.mdx, "Application Command Naming" and "Limits":
# names 1-32 characters of letters, digits, - _ ' (lowercase for slash commands); descriptions
# 1-100; up to 25 options and 25 choices; string min_length 0-6000, max_length 1-6000; all the
# names, descriptions and choice values of one command together at most 8000 characters (the
# current docs; older versions said 4000: we choose the current 8000); 100 slash commands.
MAX_COMMAND_NAME = 32
MAX_COMMAND_DESCRIPTION = 100
MAX_OPTIONS = 25
MAX_OPTION_STRING_LENGTH = 6000
MAX_COMMAND_SIZE = 8000
MAX_SLASH_COMMANDS = 100


def check_commands(commands: Sequence[Mapping[str, Any]], errors: FormErrors) -> None:
    """A bulk overwrite of application commands (PUT): naming, descriptions, options and
    choices, required-first, subcommand nesting and each command's combined size."""
    slash = [c for c in commands if c.get("type", 1) == 1]
    if len(slash) > MAX_SLASH_COMMANDS:
        errors.add((), "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_SLASH_COMMANDS} or fewer in length.")
    names: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        kind = command.get("type", 1)
        key = (kind, command.get("name", ""))
        if key in names:
            errors.add(
                (index, "name"),
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique: {key[1]}",
            )
        names.add(key)
        if kind == 1:
            _check_named((index,), command, errors)
            _check_options((index,), command.get("options") or [], 0, errors)
            size = _command_size(command)
            if size > MAX_COMMAND_SIZE:
                errors.add(
                    (index,),
                    "APPLICATION_COMMAND_TOO_LARGE",
                    f"Command exceeds maximum size ({MAX_COMMAND_SIZE}): {size}",
                )
        else:
            errors.length_between((index, "name"), command.get("name"), 1, MAX_COMMAND_NAME)


def _check_named(path: Path, item: Mapping[str, Any], errors: FormErrors) -> None:
    """Slash-command and option names (lowercase letters, digits, - _ ') and descriptions."""
    name = item.get("name") or ""
    valid = 1 <= len(name) <= MAX_COMMAND_NAME and all(_name_char(c) for c in name)
    if not valid or name != name.lower():
        errors.add(
            (*path, "name"),
            "APPLICATION_COMMAND_INVALID_NAME",
            f"Command name is invalid: {name!r}",
        )
    errors.length_between(
        (*path, "description"), item.get("description"), 1, MAX_COMMAND_DESCRIPTION
    )


def _name_char(char: str) -> bool:
    """``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$`` (letters and digits by category)."""
    return char in "-_'" or unicodedata.category(char)[0] in "LN"


def _check_options(
    path: Path, options: Sequence[Mapping[str, Any]], depth: int, errors: FormErrors
) -> None:
    """Options of a command (depth 0), of a subcommand group (1) or of a subcommand (2)."""
    if len(options) > MAX_OPTIONS:
        errors.add(
            (*path, "options"), "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_OPTIONS} or fewer in length."
        )
    kinds = [option.get("type") for option in options]
    subs = [k for k in kinds if k in (1, 2)]
    if subs and len(subs) != len(kinds):
        errors.add(
            (*path, "options"),
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Subcommands and subcommand groups cannot be mixed with other options.",
        )
    optional_seen = False
    for index, option in enumerate(options):
        here: Path = (*path, "options", index)
        _check_named(here, option, errors)
        kind = option.get("type")
        allowed_subs = {0: (1, 2), 1: (1,)}.get(depth, ())
        if kind in (1, 2) and kind not in allowed_subs:
            errors.add(
                (*here, "type"),
                "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                "This option type cannot be nested here.",
            )
        if kind in (1, 2):
            inner = 1 if kind == 2 else 2  # a group holds subcommands; a subcommand, none
            _check_options(here, option.get("options") or [], inner, errors)
            continue
        if option.get("required"):
            if optional_seen:
                errors.add(
                    (*path, "options"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        choices = option.get("choices") or []
        check_choices(choices, (*here, "choices"), errors)
        if choices and option.get("autocomplete"):
            errors.add(
                (*here, "autocomplete"),
                "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES",
                "Autocomplete cannot be used with choices.",
            )
        for key, low in (("min_length", 0), ("max_length", 1)):
            value = option.get(key)
            if value is not None and not low <= value <= MAX_OPTION_STRING_LENGTH:
                errors.add(
                    (*here, key),
                    "NUMBER_TYPE_OUT_OF_RANGE",
                    f"Must be between {low} and {MAX_OPTION_STRING_LENGTH}.",
                )


def _command_size(item: Mapping[str, Any]) -> int:
    """Characters of names, descriptions and choice names/values, options included."""
    size = len(item.get("name") or "") + len(item.get("description") or "")
    for choice in item.get("choices") or []:
        size += len(choice.get("name") or "") + len(str(choice.get("value", "")))
    return size + sum(_command_size(option) for option in item.get("options") or [])
