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
# Same page, "Registering a Command": 15 USER and 15 MESSAGE commands (older versions said 5:
# we choose the current 15); "Application Command Object": their description is an empty
# string and they have no options ("options ... CHAT_INPUT only").
MAX_CONTEXT_COMMANDS = 15
# "Application Command Option Structure": choices only for STRING 3, INTEGER 4, NUMBER 10, and
# autocomplete likewise; min_length/max_length only for STRING; min_value/max_value only for
# INTEGER/NUMBER; channel_types only for CHANNEL 7; names unique among siblings; a
# subcommand group holds 1-25 subcommands.
CHOICE_TYPES = frozenset({3, 4, 10})
KEYS_BY_TYPE = {
    "choices": CHOICE_TYPES,
    "min_length": frozenset({3}),
    "max_length": frozenset({3}),
    "min_value": frozenset({4, 10}),
    "max_value": frozenset({4, 10}),
    "channel_types": frozenset({7}),
}


def check_commands(commands: Sequence[Mapping[str, Any]], errors: FormErrors) -> None:
    """A bulk overwrite of application commands (PUT): naming, descriptions, options and
    choices, required-first, subcommand nesting and each command's combined size."""
    slash = [c for c in commands if c.get("type", 1) == 1]
    if len(slash) > MAX_SLASH_COMMANDS:
        errors.add((), "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_SLASH_COMMANDS} or fewer in length.")
    for kind, label in ((2, "user"), (3, "message")):
        if sum(1 for c in commands if c.get("type") == kind) > MAX_CONTEXT_COMMANDS:
            errors.add(
                (),
                "APPLICATION_COMMANDS_TOO_MANY",
                f"At most {MAX_CONTEXT_COMMANDS} {label} commands.",
            )
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
            if command.get("description"):
                errors.add(
                    (index, "description"),
                    "APPLICATION_COMMAND_DESCRIPTION_INVALID",
                    "User and message commands have an empty description.",
                )
            if command.get("options"):
                errors.add(
                    (index, "options"),
                    "APPLICATION_COMMAND_OPTIONS_INVALID",
                    "User and message commands have no options.",
                )


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
    description = item.get("description")
    if isinstance(description, str) and description and not description.strip():
        errors.add((*path, "description"), "BASE_TYPE_REQUIRED", "This field is required")


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
    seen_names: set[str] = set()
    for index, option in enumerate(options):
        here: Path = (*path, "options", index)
        _check_named(here, option, errors)
        kind = option.get("type")
        if option.get("name") in seen_names:
            errors.add(
                (*here, "name"),
                "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS",
                "Option names must be unique.",
            )
        seen_names.add(option.get("name"))
        allowed_subs = {0: (1, 2), 1: (1,)}.get(depth, ())
        if kind in (1, 2) and kind not in allowed_subs:
            errors.add(
                (*here, "type"),
                "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                "This option type cannot be nested here.",
            )
        if kind in (1, 2):
            inner = 1 if kind == 2 else 2  # a group holds subcommands; a subcommand, none
            if kind == 2 and not option.get("options"):
                errors.add(
                    (*here, "options"),
                    "BASE_TYPE_BAD_LENGTH",
                    f"Must be between 1 and {MAX_OPTIONS} in length.",
                )
            _check_options(here, option.get("options") or [], inner, errors)
            continue
        _check_option_keys(here, option, errors)
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


def _check_option_keys(path: Path, option: Mapping[str, Any], errors: FormErrors) -> None:
    """Keys only some option types take; min at most max; autocomplete only where choices fit."""
    kind = option.get("type")
    for key, kinds in KEYS_BY_TYPE.items():
        if option.get(key) is not None and kind not in kinds:
            errors.add(
                (*path, key),
                "APPLICATION_COMMAND_OPTION_INVALID_FOR_TYPE",
                f"{key} is not allowed for options of type {kind}.",
            )
    if option.get("autocomplete") and kind not in CHOICE_TYPES:
        errors.add(
            (*path, "autocomplete"),
            "APPLICATION_COMMAND_OPTION_INVALID_FOR_TYPE",
            f"autocomplete is not allowed for options of type {kind}.",
        )
    for low_key, high_key in (("min_length", "max_length"), ("min_value", "max_value")):
        low, high = option.get(low_key), option.get(high_key)
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            errors.add(
                (*path, low_key),
                "APPLICATION_COMMAND_OPTION_MIN_GT_MAX",
                f"{low_key} must be less than or equal to {high_key}.",
            )


def _command_size(item: Mapping[str, Any]) -> int:
    """Characters of names, descriptions and choice names/values, options included; where a
    field has localizations, only its longest version counts (application-commands.mdx,
    "Limits")."""
    size = _longest(item, "name") + _longest(item, "description")
    for choice in item.get("choices") or []:
        size += _longest(choice, "name") + len(str(choice.get("value", "")))
    return size + sum(_command_size(option) for option in item.get("options") or [])


def _longest(item: Mapping[str, Any], key: str) -> int:
    versions = [item.get(key) or "", *(item.get(f"{key}_localizations") or {}).values()]
    return max(len(text or "") for text in versions)
