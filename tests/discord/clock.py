"""The fake's own clock, for Discord's time rules (first answer within 3 s, tokens for 15 min).

It moves only when a test calls ``advance``: a slow machine never makes the bot look late, and a
test can still prove a late answer is refused (hold the bot's answer, advance, let it answer).
"""

from __future__ import annotations

# docs/interactions/receiving-and-responding.mdx, "Responding to an Interaction": the first
# response must come within 3 seconds (else the token is invalidated: 404 / 10062), and
# "Interaction tokens are valid for 15 minutes" (follow-ups and edits then: 401 / 50027).
FIRST_RESPONSE_S = 3.0
TOKEN_LIFETIME_S = 15 * 60.0


class FakeClock:
    """Seconds since the fake started, advanced only by the test."""

    def __init__(self) -> None:
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on Discord's side (not for the bot: its own clock is real)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._now += seconds
