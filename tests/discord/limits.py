"""Discord's documented limits on the messages and interaction answers a bot sends, checked as
Discord checks them (application commands: ``command_limits``).

Each number cites where Discord documents it (paths in ``discord/discord-api-docs``). A body
that breaks a rule is refused like Discord refuses it: 400 with JSON code 50035 ("Invalid Form
Body") and an ``errors`` object nested like the body (``{"embeds": {"0": {"fields": {"3":
{"value": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": ...}]}}}}}}``); uploads
too large are refused with 413 / 40005. Every rule found is reported, not only the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

from tests.discord.faults import RestError
from tests.discord.interaction_rules import (
    check_choice_types,
    check_modal_layout,
    focused_option_type,
)
from tests.discord.message_rules import (
    check_button,
    check_embed_parts,
    check_select,
    check_v2_message,
)

Path = tuple[str | int, ...]

# docs/resources/message.md, "Create Message": content "up to 2000 characters"; embeds "up to 10"
MAX_CONTENT = 2000
MAX_EMBEDS = 10
# docs/resources/message.md, "Embed Limits"
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256
MAX_EMBEDS_TOTAL = 6000  # title, description, field names/values, footer text, author names
# docs/resources/message.md, "Create Message": "attachments ... up to 10"
MAX_ATTACHMENTS = 10
# docs/reference.mdx, "Uploading Files": "The maximum request size when sending a message is
# 25 MiB"; each file is limited by the interaction's ``attachment_size_limit`` (10 MiB for an
# unboosted server, docs/resources/guild.md "Premium Tier"); both answer 413 / 40005.
MAX_REQUEST_BYTES = 25 * 2**20
# docs/resources/message.md, "Allowed Mentions Object": users/roles "max size of 100"
MAX_ALLOWED_MENTION_IDS = 100
# docs/components/reference.mdx: "Action Row": up to 5 buttons; a message holds at most 5 action
# rows (legacy components, without the IS_COMPONENTS_V2 flag); "Button": custom_id 1-100
# characters, label max 80, link buttons need a url and no custom_id, others a custom_id;
# "custom_id ... must be unique per message".
MAX_ACTION_ROWS = 5
MAX_ROW_BUTTONS = 5
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
# docs/components/reference.mdx, "String Select": up to 25 options; label, value, description
# max 100; placeholder max 150; min_values 0-25, max_values 1-25.
MAX_SELECT_OPTIONS = 25
MAX_SELECT_TEXT = 100
MAX_SELECT_PLACEHOLDER = 150
# docs/interactions/receiving-and-responding.mdx, "Autocomplete": up to 25 choices;
# docs/interactions/application-commands.mdx, "Application Command Option Choice Structure":
# name 1-100 characters, a string value up to 100 characters.
MAX_CHOICES = 25
MAX_CHOICE_NAME = 100
MAX_CHOICE_STRING_VALUE = 100
# docs/interactions/receiving-and-responding.mdx, "Modal": custom_id max 100, title max 45,
# 1-5 components; docs/components/reference.mdx "Text Input": label max 45, placeholder max 100,
# value max 4000, min_length 0-4000, max_length 1-4000; "Label": label 45, description 100.
MAX_MODAL_TITLE = 45
MAX_MODAL_COMPONENTS = 5
MAX_TEXT_INPUT_LABEL = 45
MAX_TEXT_INPUT_PLACEHOLDER = 100
MAX_TEXT_INPUT_VALUE = 4000
MAX_LABEL_DESCRIPTION = 100


class MessageFlag:
    """docs/resources/message.md, "Message Flags"."""

    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_VOICE_MESSAGE = 1 << 13
    IS_COMPONENTS_V2 = 1 << 15


class Route(Enum):
    """Which request a message body came with: the flags each one allows differ."""

    CREATE = "create message"  # docs/resources/message.md, "Create Message"
    EDIT = "edit message"  # docs/resources/message.md, "Edit Message"
    INTERACTION = "interaction response or follow-up"  # receiving-and-responding.mdx
    WEBHOOK_EDIT = "edit webhook message"  # docs/resources/webhook.md, "Edit Webhook Message"


ALLOWED_FLAGS = {
    Route.CREATE: MessageFlag.SUPPRESS_EMBEDS
    | MessageFlag.SUPPRESS_NOTIFICATIONS
    | MessageFlag.IS_VOICE_MESSAGE
    | MessageFlag.IS_COMPONENTS_V2,
    Route.EDIT: MessageFlag.SUPPRESS_EMBEDS | MessageFlag.IS_COMPONENTS_V2,
    Route.INTERACTION: MessageFlag.SUPPRESS_EMBEDS
    | MessageFlag.EPHEMERAL
    | MessageFlag.SUPPRESS_NOTIFICATIONS
    | MessageFlag.IS_COMPONENTS_V2,
    Route.WEBHOOK_EDIT: MessageFlag.SUPPRESS_EMBEDS | MessageFlag.IS_COMPONENTS_V2,
}

# docs/interactions/receiving-and-responding.mdx, "Interaction Callback Type": which answers
# each interaction type takes (PING 1 / COMMAND 2 / COMPONENT 3 / AUTOCOMPLETE 4 / MODAL 5).
VALID_CALLBACKS = {
    1: {1},
    2: {4, 5, 9},
    3: {4, 5, 6, 7, 9},
    4: {8},
    5: {4, 5, 6, 7},
}


class FormErrors:
    """Collects rule violations into Discord's nested ``errors`` object."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Path, code: str, message: str) -> None:
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Path, value: Any, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def length_between(self, path: Path, value: Any, low: int, high: int) -> None:
        if value is None or not low <= len(value) <= high:
            self.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")

    def required_text(self, path: Path, value: Any, limit: int) -> None:
        """A string that must be present, non-empty and at most ``limit`` characters."""
        if not isinstance(value, str) or not value.strip():
            self.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        else:
            self.max_length(path, value, limit)

    def raise_if_any(self) -> None:
        if self.tree:
            raise RestError(400, 50035, "Invalid Form Body", self.tree)


def check_message(payload: Mapping[str, Any], route: Route, errors: FormErrors) -> None:
    """A message body (create, edit, interaction response, follow-up): text, embeds, components,
    attachments, allowed mentions and flags."""
    errors.max_length(("content",), payload.get("content"), MAX_CONTENT)
    embeds = payload.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        errors.add(("embeds",), "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
    total = sum(_check_embed(embed, ("embeds", i), errors) for i, embed in enumerate(embeds))
    if total > MAX_EMBEDS_TOTAL:
        errors.add(
            ("embeds",),
            "MAX_EMBED_SIZE_EXCEEDED",
            f"Embed size exceeds maximum size of {MAX_EMBEDS_TOTAL}",
        )
    attachments = payload.get("attachments") or []
    if len(attachments) > MAX_ATTACHMENTS:
        errors.add(
            ("attachments",),
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {MAX_ATTACHMENTS} or fewer in length.",
        )
    flags = payload.get("flags") or 0
    if flags & ~ALLOWED_FLAGS[route]:
        errors.add(("flags",), "MESSAGE_FLAGS_INVALID", f"Invalid flags for {route.value}.")
    check_components(payload.get("components") or [], flags, errors)
    check_v2_message(payload, errors)
    _check_allowed_mentions(payload.get("allowed_mentions"), errors)


def _check_embed(embed: Mapping[str, Any], path: Path, errors: FormErrors) -> int:
    """Checks one embed; its size toward the 6000 characters of all embeds."""
    title, description = embed.get("title") or "", embed.get("description") or ""
    errors.max_length((*path, "title"), title, MAX_EMBED_TITLE)
    errors.max_length((*path, "description"), description, MAX_EMBED_DESCRIPTION)
    size = len(title) + len(description)
    fields = embed.get("fields") or []
    if len(fields) > MAX_EMBED_FIELDS:
        errors.add(
            (*path, "fields"),
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {MAX_EMBED_FIELDS} or fewer in length.",
        )
    for index, field in enumerate(fields):
        errors.required_text((*path, "fields", index, "name"), field.get("name"), MAX_FIELD_NAME)
        errors.required_text((*path, "fields", index, "value"), field.get("value"), MAX_FIELD_VALUE)
        size += len(field.get("name") or "") + len(field.get("value") or "")
    if (footer := embed.get("footer")) is not None:  # an empty footer / author is refused too
        errors.required_text((*path, "footer", "text"), footer.get("text"), MAX_FOOTER_TEXT)
        size += len(footer.get("text") or "")
    if (author := embed.get("author")) is not None:
        errors.required_text((*path, "author", "name"), author.get("name"), MAX_AUTHOR_NAME)
        size += len(author.get("name") or "")
    check_embed_parts(embed, path, errors)
    return size


def _check_allowed_mentions(allowed: Mapping[str, Any] | None, errors: FormErrors) -> None:
    """docs/resources/message.md, "Allowed Mentions Object": ``parse`` naming users (roles) and an
    explicit ``users`` (``roles``) list together are an error; lists hold at most 100 ids."""
    if not allowed:
        return
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        ids = allowed.get(kind)
        if ids and kind in parse:
            errors.add(
                ("allowed_mentions",),
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids] are mutually exclusive.',
            )
        if ids and len(ids) > MAX_ALLOWED_MENTION_IDS:
            errors.add(
                ("allowed_mentions", kind),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_ALLOWED_MENTION_IDS} or fewer in length.",
            )


def check_components(components: Sequence[Any], flags: int, errors: FormErrors) -> None:
    """Legacy message components: action rows of buttons or one select (Components V2 layouts
    are checked only for unique custom_ids: the bot sends none)."""
    v2 = bool(flags & MessageFlag.IS_COMPONENTS_V2)
    if not v2 and len(components) > MAX_ACTION_ROWS:
        errors.add(
            ("components",),
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {MAX_ACTION_ROWS} or fewer in length.",
        )
    seen: set[str] = set()
    for row_index, row in enumerate(components):
        path: Path = ("components", row_index)
        if row.get("type") != 1:
            if not v2:
                errors.add((*path, "type"), "COMPONENT_TYPE_INVALID", "Expected an action row.")
            continue
        children = row.get("components") or []
        if not 1 <= len(children) <= MAX_ROW_BUTTONS:
            errors.add(
                (*path, "components"),
                "BASE_TYPE_BAD_LENGTH",
                f"Must be between 1 and {MAX_ROW_BUTTONS} in length.",
            )
        selects = [c for c in children if c.get("type") in (3, 5, 6, 7, 8)]
        if selects and len(children) > 1:
            errors.add(
                (*path, "components"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "A select menu takes a whole action row.",
            )
        for index, child in enumerate(children):
            _check_interactive((*path, "components", index), child, seen, errors)


def _check_interactive(
    path: Path, component: Mapping[str, Any], seen: set[str], errors: FormErrors
) -> None:
    custom_id = component.get("custom_id")
    if component.get("type") == 2:
        errors.max_length((*path, "label"), component.get("label"), MAX_BUTTON_LABEL)
        premium = component.get("style") == 6
        if not premium and not component.get("label") and not component.get("emoji"):
            errors.add(path, "BUTTON_LABEL_OR_EMOJI_REQUIRED", "A button needs a label or emoji.")
        link = component.get("style") == 5
        if link and (custom_id is not None or not component.get("url")):
            errors.add(path, "BUTTON_LINK_INVALID", "A link button has a url and no custom_id.")
        if not link and not premium and custom_id is None:
            errors.add((*path, "custom_id"), "BASE_TYPE_REQUIRED", "This field is required")
        check_button(path, component, errors)
    else:
        check_select(path, component, errors)
        options = component.get("options")
        if options is not None:
            errors.length_between((*path, "options"), options, 1, MAX_SELECT_OPTIONS)
            for index, option in enumerate(options):
                for key in ("label", "value"):
                    errors.length_between(
                        (*path, "options", index, key), option.get(key), 1, MAX_SELECT_TEXT
                    )
                errors.max_length(
                    (*path, "options", index, "description"),
                    option.get("description"),
                    MAX_SELECT_TEXT,
                )
        errors.max_length(
            (*path, "placeholder"), component.get("placeholder"), MAX_SELECT_PLACEHOLDER
        )
    if custom_id is None:
        return
    errors.length_between((*path, "custom_id"), custom_id, 1, MAX_CUSTOM_ID)
    if custom_id in seen:
        errors.add(
            (*path, "custom_id"),
            "COMPONENT_CUSTOM_ID_DUPLICATED",
            "Component custom id cannot be duplicated",
        )
    seen.add(custom_id)


def check_callback(
    interaction_type: int,
    payload: Mapping[str, Any],
    errors: FormErrors,
    interaction_data: Mapping[str, Any] | None = None,
) -> None:
    """An interaction callback: its type must suit the interaction, and its data its type
    (autocomplete values that of the focused option in ``interaction_data``)."""
    kind = payload.get("type")
    if kind not in VALID_CALLBACKS.get(interaction_type, set()):
        errors.add(
            ("type",),
            "INTERACTION_CALLBACK_TYPE_INVALID",
            f"Callback type {kind} is not valid for interaction type {interaction_type}.",
        )
        return
    data = payload.get("data") or {}
    if kind in (4, 7):
        check_message(data, Route.INTERACTION, _Prefixed(errors, ("data",)))
    elif kind == 5:
        if (data.get("flags") or 0) & ~MessageFlag.EPHEMERAL:
            errors.add(("data", "flags"), "MESSAGE_FLAGS_INVALID", "Only EPHEMERAL is allowed.")
    elif kind == 8:
        choices = data.get("choices") or []
        check_choices(choices, ("data", "choices"), errors)
        option_type = focused_option_type(interaction_data)
        check_choice_types(choices, ("data", "choices"), option_type, errors)
    elif kind == 9:
        _check_modal(data, errors)
        check_modal_layout(data, errors)


def check_choices(choices: Sequence[Mapping[str, Any]], path: Path, errors: FormErrors) -> None:
    if len(choices) > MAX_CHOICES:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CHOICES} or fewer in length.")
    for index, choice in enumerate(choices):
        errors.length_between((*path, index, "name"), choice.get("name"), 1, MAX_CHOICE_NAME)
        value = choice.get("value")
        if isinstance(value, str):
            errors.max_length((*path, index, "value"), value, MAX_CHOICE_STRING_VALUE)


def _check_modal(data: Mapping[str, Any], errors: FormErrors) -> None:
    errors.length_between(("data", "custom_id"), data.get("custom_id"), 1, MAX_CUSTOM_ID)
    errors.length_between(("data", "title"), data.get("title"), 1, MAX_MODAL_TITLE)
    components = data.get("components") or []
    errors.length_between(("data", "components"), components, 1, MAX_MODAL_COMPONENTS)
    seen: set[str] = set()
    for index, row in enumerate(components):
        path: Path = ("data", "components", index)
        if row.get("type") == 18:  # a Label around one input
            errors.length_between((*path, "label"), row.get("label"), 1, MAX_TEXT_INPUT_LABEL)
            errors.max_length((*path, "description"), row.get("description"), MAX_LABEL_DESCRIPTION)
            inputs = [(("component",), row.get("component") or {})]
        else:
            inputs = [(("components", i), c) for i, c in enumerate(row.get("components") or [])]
        for suffix, component in inputs:
            _check_modal_input((*path, *suffix), component, seen, errors)


def _check_modal_input(
    path: Path, component: Mapping[str, Any], seen: set[str], errors: FormErrors
) -> None:
    custom_id = component.get("custom_id")
    errors.length_between((*path, "custom_id"), custom_id, 1, MAX_CUSTOM_ID)
    if custom_id in seen:
        errors.add(
            (*path, "custom_id"),
            "COMPONENT_CUSTOM_ID_DUPLICATED",
            "Component custom id cannot be duplicated",
        )
    seen.add(custom_id)
    if component.get("type") != 4:
        return
    errors.max_length((*path, "label"), component.get("label"), MAX_TEXT_INPUT_LABEL)
    errors.max_length(
        (*path, "placeholder"), component.get("placeholder"), MAX_TEXT_INPUT_PLACEHOLDER
    )
    errors.max_length((*path, "value"), component.get("value"), MAX_TEXT_INPUT_VALUE)
    for key, low in (("min_length", 0), ("max_length", 1)):
        value = component.get(key)
        if value is not None and not low <= value <= MAX_TEXT_INPUT_VALUE:
            errors.add(
                (*path, key),
                "NUMBER_TYPE_OUT_OF_RANGE",
                f"Must be between {low} and {MAX_TEXT_INPUT_VALUE}.",
            )


class _Prefixed(FormErrors):
    """A view of ``FormErrors`` that files every error under ``prefix`` (the ``data`` of a
    callback holds a message body)."""

    def __init__(self, inner: FormErrors, prefix: Path) -> None:
        self._inner = inner
        self._prefix = prefix

    def add(self, path: Path, code: str, message: str) -> None:
        self._inner.add((*self._prefix, *path), code, message)


def check_file_count(files: int, errors: FormErrors) -> None:
    """docs/reference.mdx, "Uploading Files": at most 10 files a message, whether or not the
    body lists them in ``attachments``."""
    if files > MAX_ATTACHMENTS:
        errors.add(
            ("attachments",),
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {MAX_ATTACHMENTS} or fewer in length.",
        )


def check_upload(sizes: Iterable[int], request_bytes: int, per_file_limit: int) -> None:
    """413 / 40005 when one file exceeds ``per_file_limit`` or the request 25 MiB."""
    if request_bytes > MAX_REQUEST_BYTES or any(size > per_file_limit for size in sizes):
        raise RestError(413, 40005, "Request entity too large")
