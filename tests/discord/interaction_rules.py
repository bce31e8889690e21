"""Discord's rules on the content of modals and autocomplete answers (``limits`` checks their
sizes). Each rule cites where Discord documents it (paths in ``discord/discord-api-docs``);
a breach is refused like every invalid form body (400 / 50035, an ``errors`` object).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.discord.limits import FormErrors, Path

TEXT_INPUT = 4
ACTION_ROW = 1
LABEL = 18
# docs/components/reference.mdx, "Label": in a modal, a Label holds one interactive component
# (text input, select menus, file upload, ...); "Text Input": inside a Label the input has no
# ``label`` of its own (the Label's is shown; the input's is deprecated); in an Action Row
# (deprecated in modals) a text input is alone in its row and needs its ``label``.
LABEL_CHILDREN = frozenset({3, 4, 5, 6, 7, 8, 19, 21, 22})
# docs/interactions/application-commands.mdx, "Application Command Option Type": STRING 3,
# INTEGER 4, NUMBER 10: an autocomplete choice's value has the focused option's type.
STRING, INTEGER, NUMBER = 3, 4, 10


def check_modal_layout(data: Mapping[str, Any], errors: FormErrors) -> None:
    """A modal's title is not blank; each Action Row holds exactly one labelled text input;
    each Label one interactive component with no label of its own; at least one input; a text
    input's min_length is at most its max_length and its prefilled value fits both."""
    title = data.get("title")
    if isinstance(title, str) and title and not title.strip():
        errors.add(("data", "title"), "BASE_TYPE_REQUIRED", "This field is required")
    inputs = 0
    for index, row in enumerate(data.get("components") or []):
        path: Path = ("data", "components", index)
        kind = row.get("type")
        if kind == ACTION_ROW:
            children = row.get("components") or []
            if len(children) != 1:
                errors.add(
                    (*path, "components"),
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 1 in length.",
                )
            for position, child in enumerate(children):
                here: Path = (*path, "components", position)
                if child.get("type") == TEXT_INPUT and not child.get("label"):
                    errors.add((*here, "label"), "BASE_TYPE_REQUIRED", "This field is required")
                _check_text_input(here, child, errors)
                inputs += 1
        elif kind == LABEL:
            child = row.get("component") or {}
            here = (*path, "component")
            if child.get("type") == TEXT_INPUT and child.get("label") is not None:
                errors.add(
                    (*here, "label"),
                    "COMPONENT_LABEL_NOT_ALLOWED",
                    "A text input inside a Label has no label of its own.",
                )
            if child.get("type") not in LABEL_CHILDREN:
                errors.add((*here, "type"), "COMPONENT_TYPE_INVALID", "Invalid component type.")
            _check_text_input(here, child, errors)
            inputs += 1
    if not inputs:
        errors.add(
            ("data", "components"),
            "MODAL_REQUIRES_INTERACTIVE_COMPONENT",
            "A modal needs at least one interactive component.",
        )


def _check_text_input(path: Path, component: Mapping[str, Any], errors: FormErrors) -> None:
    """docs/components/reference.mdx, "Text Input": min_length <= max_length; ``value`` (the
    prefilled text) within them."""
    if component.get("type") != TEXT_INPUT:
        return
    low, high = component.get("min_length"), component.get("max_length")
    ints = isinstance(low, int) and isinstance(high, int)
    if ints and low > high:
        errors.add(
            (*path, "min_length"),
            "TEXT_INPUT_MIN_LENGTH_GT_MAX",
            "min_length must be less than or equal to max_length.",
        )
    value = component.get("value")
    if not isinstance(value, str) or not value:
        return
    if isinstance(high, int) and len(value) > high:
        errors.add((*path, "value"), "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")
    if isinstance(low, int) and len(value) < low:
        errors.add((*path, "value"), "BASE_TYPE_MIN_LENGTH", f"Must be {low} or more in length.")


def check_choice_types(
    choices: Sequence[Mapping[str, Any]], path: Path, option_type: int | None, errors: FormErrors
) -> None:
    """Each choice's ``value`` is of ``option_type`` (a string for STRING, an integer for
    INTEGER, a number for NUMBER; booleans are neither)."""
    for index, choice in enumerate(choices):
        value = choice.get("value")
        if option_type == STRING:
            valid = isinstance(value, str)
        elif option_type == INTEGER:
            valid = isinstance(value, int) and not isinstance(value, bool)
        elif option_type == NUMBER:
            valid = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            continue
        if not valid:
            errors.add(
                (*path, index, "value"),
                "APPLICATION_COMMAND_OPTION_CHOICE_TYPE_INVALID",
                "The choice's value does not match the option's type.",
            )


def focused_option_type(data: Mapping[str, Any] | None) -> int | None:
    """The type of the option being typed in an autocomplete interaction (subcommands
    searched), or None."""
    stack = list((data or {}).get("options") or [])
    while stack:
        option = stack.pop()
        if option.get("focused"):
            return option.get("type")
        stack.extend(option.get("options") or [])
    return None
