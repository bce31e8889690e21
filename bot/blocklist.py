"""Prompt blocklists: a server's terms, checked before a job is queued."""

from __future__ import annotations

import re
from collections.abc import Iterable


def term_matches(term: str, text: str) -> bool:
    """Whether `term` occurs in `text` as whole words, ignoring case; `*` stands for any
    letters, so `gore*` also blocks "gorefest" (but `gore` does not block "gorgeous")."""
    pattern = r"\w*".join(re.escape(part) for part in term.casefold().split("*"))
    return re.search(rf"(?<!\w){pattern}(?!\w)", text.casefold()) is not None


def first_blocked_term(terms: Iterable[str], text: str) -> str | None:
    """The first term of the blocklist that `text` contains, if any."""
    return next((term for term in terms if term_matches(term, text)), None)
