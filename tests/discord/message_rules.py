"""Discord's rules on what the parts of a message contain (``limits`` checks their sizes): embed
links and timestamps, buttons, select menus, emoji, and the IS_COMPONENTS_V2 layout.

Each rule cites where Discord documents it (paths in ``discord/discord-api-docs``); a body that
breaks one is refused like every invalid form body (400 / 50035, an ``errors`` object).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from emoji import is_emoji

if TYPE_CHECKING:
    from tests.discord.limits import FormErrors, Path

# docs/resources/message.md, "Embed Structure" / "Embed Thumbnail Structure" / "Embed Image
# Structure" / "Embed Footer Structure" / "Embed Author Structure": urls are http(s); the image,
# thumbnail and icon urls "only support http(s) and attachments" (``attachment://filename``);
# thumbnail and image need their ``url``; a footer needs ``text`` and an author ``name``.
WEB_SCHEMES = frozenset({"http", "https"})
IMAGE_SCHEMES = WEB_SCHEMES | {"attachment"}
# docs/components/reference.mdx, "Button": a link button's url (Discord also opens its own
# ``discord://`` links).
LINK_BUTTON_SCHEMES = WEB_SCHEMES | {"discord"}
# docs/components/reference.mdx, "Button Styles": 5 Link, 6 Premium; "Premium buttons ... must
# contain a sku_id, and cannot have a custom_id, label, url, or emoji".
LINK_STYLE = 5
PREMIUM_STYLE = 6
# docs/components/reference.mdx: only the String Select (3) has ``options``; User (5), Role (6),
# Mentionable (7) and Channel (8) selects take ``default_values`` instead.
STRING_SELECT = 3
AUTO_SELECTS = frozenset({5, 6, 7, 8})
# docs/components/reference.mdx, "Using IS_COMPONENTS_V2": "the content, embeds, stickers and
# poll fields can't be used" with the flag (components carry all the text).
V2_FORBIDDEN = ("content", "embeds", "sticker_ids", "poll")
IS_COMPONENTS_V2 = 1 << 15


def check_embed_parts(embed: Mapping[str, Any], path: Path, errors: FormErrors) -> None:
    """An embed's links (scheme and form), its ISO 8601 timestamp, and its sub-objects' required
    fields (footer text, author name, thumbnail/image url)."""
    check_url((*path, "url"), embed.get("url"), WEB_SCHEMES, errors)
    if (timestamp := embed.get("timestamp")) is not None and not _iso8601(timestamp):
        errors.add(
            (*path, "timestamp"), "DATE_TIME_TYPE_PARSE", "Could not parse timestamp. ISO8601?"
        )
    if (author := embed.get("author")) is not None:
        check_url((*path, "author", "url"), author.get("url"), WEB_SCHEMES, errors)
        check_url((*path, "author", "icon_url"), author.get("icon_url"), IMAGE_SCHEMES, errors)
    if (footer := embed.get("footer")) is not None:
        check_url((*path, "footer", "icon_url"), footer.get("icon_url"), IMAGE_SCHEMES, errors)
    for key in ("thumbnail", "image"):
        if (media := embed.get(key)) is not None:
            if not media.get("url"):
                errors.add((*path, key, "url"), "BASE_TYPE_REQUIRED", "This field is required")
            check_url((*path, key, "url"), media.get("url"), IMAGE_SCHEMES, errors)


def check_url(path: Path, url: Any, schemes: frozenset[str], errors: FormErrors) -> None:
    """A well-formed absolute url of one of ``schemes`` (None: no url, nothing to check)."""
    if url is None:
        return
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in schemes or " " in url:
        valid = False
    elif parts.scheme in WEB_SCHEMES:
        valid = bool(parts.hostname)
    else:
        valid = bool(parts.netloc or parts.path)
    if not valid:
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")


def _iso8601(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def check_v2_message(payload: Mapping[str, Any], errors: FormErrors) -> None:
    """With IS_COMPONENTS_V2 the message has no content, embeds, stickers or poll."""
    if not (payload.get("flags") or 0) & IS_COMPONENTS_V2:
        return
    for key in V2_FORBIDDEN:
        if payload.get(key):
            errors.add(
                (key,),
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content', 'embeds', 'sticker_ids' and 'poll' fields cannot be used when "
                "using MessageFlags.IS_COMPONENTS_V2",
            )


def check_button(path: Path, button: Mapping[str, Any], errors: FormErrors) -> None:
    """Link buttons' url, premium buttons' fields, and the emoji of any button."""
    style = button.get("style")
    if style == LINK_STYLE:
        check_url((*path, "url"), button.get("url"), LINK_BUTTON_SCHEMES, errors)
    if style == PREMIUM_STYLE:
        if not button.get("sku_id"):
            errors.add((*path, "sku_id"), "BASE_TYPE_REQUIRED", "This field is required")
        for key in ("custom_id", "label", "url", "emoji"):
            if button.get(key) is not None:
                errors.add(
                    (*path, key),
                    "BUTTON_PREMIUM_FIELD_INVALID",
                    "A premium button cannot have a custom_id, label, url or emoji.",
                )
    elif button.get("url") is not None and style != LINK_STYLE:
        errors.add((*path, "url"), "BUTTON_URL_INVALID", "Only a link button has a url.")
    if (emoji := button.get("emoji")) is not None:
        check_component_emoji((*path, "emoji"), emoji, errors)


def check_component_emoji(path: Path, emoji: Mapping[str, Any], errors: FormErrors) -> None:
    """docs/components/reference.mdx, "Button": ``emoji`` is a partial emoji, ``name`` (a Unicode
    emoji) or ``id`` (a custom emoji). The fake's server has no custom emoji, so any ``id``
    is unknown, as Discord answers for an emoji the application cannot use."""
    if emoji.get("id") is not None:
        errors.add((*path, "id"), "COMPONENT_INVALID_EMOJI", "Invalid emoji")
    elif not is_unicode_emoji(emoji.get("name")):
        errors.add((*path, "name"), "COMPONENT_INVALID_EMOJI", "Invalid emoji")


def is_unicode_emoji(text: Any) -> bool:
    """Exactly one Unicode emoji (sequences, skin tones and flags included), by the Unicode
    emoji data of the ``emoji`` library: what Discord takes as an emoji name (anything else
    answers 10014 Unknown Emoji, or "Invalid emoji" in a component)."""
    return isinstance(text, str) and is_emoji(text)


def check_select(path: Path, select: Mapping[str, Any], errors: FormErrors) -> None:
    """docs/components/reference.mdx, "String Select" / "User Select" ...: min_values at most
    max_values (default 1), both at most the number of options; option values unique; no more
    options marked ``default`` than max_values; ``options`` only on a string select."""
    kind = select.get("type")
    options: Sequence[Mapping[str, Any]] = select.get("options") or []
    if kind in AUTO_SELECTS and select.get("options") is not None:
        errors.add(
            (*path, "options"),
            "COMPONENT_SELECT_OPTIONS_INVALID",
            "Only a string select menu has options.",
        )
    low = select.get("min_values")
    high = select.get("max_values")
    low_n = 1 if low is None else low
    high_n = 1 if high is None else high
    if isinstance(low_n, int) and isinstance(high_n, int) and low_n > high_n:
        errors.add(
            (*path, "min_values"),
            "SELECT_COMPONENT_MIN_VALUES_GT_MAX",
            "min_values must be less than or equal to max_values.",
        )
    if kind != STRING_SELECT:
        return
    for key, value in (("min_values", low), ("max_values", high)):
        if isinstance(value, int) and value > len(options):
            errors.add(
                (*path, key),
                "SELECT_COMPONENT_TOO_FEW_OPTIONS",
                f"{key} must be at most the number of options ({len(options)}).",
            )
    seen: set[Any] = set()
    for index, option in enumerate(options):
        value = option.get("value")
        if value in seen:
            errors.add(
                (*path, "options", index, "value"),
                "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                "Select component option values must be unique.",
            )
        seen.add(value)
        if (emoji := option.get("emoji")) is not None:
            check_component_emoji((*path, "options", index, "emoji"), emoji, errors)
    defaults = sum(1 for option in options if option.get("default"))
    if isinstance(high_n, int) and defaults > high_n:
        errors.add(
            (*path, "options"),
            "SELECT_COMPONENT_TOO_MANY_DEFAULTS",
            f"At most max_values ({high_n}) options can be default.",
        )
