"""Users (bans, limits, priority, personal defaults), guild settings, and the audit log.

Admin changes take `by` (the admin's user id) and write their audit entry in the same
transaction, so the log cannot miss a change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

import aiosqlite

from generation.jobs import Priority
from storage.errors import InvalidValue
from storage.records import AuditEntry, UserSettings
from storage.store import Store

MAX_REASON_CHARS = 500
MAX_TERM_CHARS = 100


class Keep(Enum):
    """`KEEP`: leave this setting as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


class People(Store):
    # ---- users ---------------------------------------------------------------------------------

    async def get_user(self, user_id: int) -> UserSettings:
        """The user's settings; defaults for someone never seen."""
        row = await self._fetchone("SELECT * FROM users WHERE user_id = ?", (user_id,))
        if row is None:
            return UserSettings(user_id)
        return UserSettings(
            user_id=user_id,
            banned_at=row["banned_at"],
            ban_reason=row["ban_reason"],
            banned_by=row["banned_by"],
            max_queued=row["max_queued"],
            max_running=row["max_running"],
            weight=row["weight"],
            priority=Priority(row["priority"]),
            default_model=row["default_model"],
            default_aspect=row["default_aspect"],
            default_negative_prompt=row["default_negative_prompt"],
        )

    async def ban(self, user_id: int, reason: str, by: int) -> None:
        """Ban a user (they can no longer queue jobs); replaces the reason of an earlier ban."""
        reason = " ".join(reason.split())
        if not reason or len(reason) > MAX_REASON_CHARS:
            raise InvalidValue(
                f"Give a reason for the ban (at most {MAX_REASON_CHARS} characters)."
            )
        await self._update_user(
            user_id,
            {"banned_at": self._clock(), "ban_reason": reason, "banned_by": by},
            by=by,
            action="user.ban",
            details={"reason": reason},
        )

    async def unban(self, user_id: int, by: int) -> None:
        await self._update_user(
            user_id,
            {"banned_at": None, "ban_reason": None, "banned_by": None},
            by=by,
            action="user.unban",
        )

    async def set_limits(
        self,
        user_id: int,
        *,
        by: int,
        max_queued: int | Keep | None = KEEP,
        max_running: int | Keep | None = KEEP,
        weight: float | Keep = KEEP,
        priority: Priority | Keep = KEEP,
    ) -> UserSettings:
        """Change a user's scheduling rights (None limits: the installation's default)."""
        changes: dict[str, Any] = {}
        for name, value in (("max_queued", max_queued), ("max_running", max_running)):
            if value is not KEEP:
                if value is not None and not 0 <= value <= 10_000:
                    raise InvalidValue(f"{name} must be between 0 and 10,000 (or unset).")
                changes[name] = value
        if weight is not KEEP:
            if not 0.01 <= weight <= 100:
                raise InvalidValue("A weight must be between 0.01 and 100.")
            changes["weight"] = float(weight)
        if priority is not KEEP:
            changes["priority"] = Priority(priority).value
        await self._update_user(user_id, changes, by=by, action="user.limits", details=changes)
        return await self.get_user(user_id)

    async def set_defaults(
        self,
        user_id: int,
        *,
        model: str | Keep | None = KEEP,
        aspect: str | Keep | None = KEEP,
        negative_prompt: str | Keep | None = KEEP,
    ) -> UserSettings:
        """Change a user's personal defaults (None clears one). The caller validates values."""
        changes = {
            column: value
            for column, value in (
                ("default_model", model),
                ("default_aspect", aspect),
                ("default_negative_prompt", negative_prompt),
            )
            if value is not KEEP
        }
        await self._update_user(user_id, changes)
        return await self.get_user(user_id)

    async def _update_user(
        self,
        user_id: int,
        changes: Mapping[str, Any],
        *,
        by: int | None = None,
        action: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        # Column names come from the callers above, never from input.
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO users (user_id) VALUES (?) ON CONFLICT DO NOTHING", (user_id,)
            )
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                await conn.execute(
                    f"UPDATE users SET {assignments} WHERE user_id = ?",
                    (*changes.values(), user_id),
                )
            if action is not None and by is not None:
                await write_audit(conn, self._clock(), by, action, f"user:{user_id}", details)

    # ---- guild settings ------------------------------------------------------------------------

    async def allow_channel(self, guild_id: int, channel_id: int, *, by: int) -> bool:
        """Allow jobs in this channel (a guild with none allows all); False if it already was."""
        return await self._guild_change(
            "INSERT OR IGNORE INTO guild_channels (guild_id, channel_id) VALUES (?, ?)",
            (guild_id, channel_id),
            by=by,
            action="guild.allow_channel",
            guild_id=guild_id,
            details={"channel_id": channel_id},
        )

    async def disallow_channel(self, guild_id: int, channel_id: int, *, by: int) -> bool:
        return await self._guild_change(
            "DELETE FROM guild_channels WHERE guild_id = ? AND channel_id = ?",
            (guild_id, channel_id),
            by=by,
            action="guild.disallow_channel",
            guild_id=guild_id,
            details={"channel_id": channel_id},
        )

    async def allowed_channels(self, guild_id: int) -> list[int]:
        """The channels jobs may be asked for in; empty means every channel."""
        rows = await self._fetchall(
            "SELECT channel_id FROM guild_channels WHERE guild_id = ? ORDER BY channel_id",
            (guild_id,),
        )
        return [row[0] for row in rows]

    async def block_term(self, guild_id: int, term: str, *, by: int) -> bool:
        """Add a term to the guild's prompt blocklist (stored case-folded); False if present."""
        term = _normal_term(term)
        return await self._guild_change(
            "INSERT OR IGNORE INTO guild_blocklist (guild_id, term) VALUES (?, ?)",
            (guild_id, term),
            by=by,
            action="guild.block_term",
            guild_id=guild_id,
            details={"term": term},
        )

    async def unblock_term(self, guild_id: int, term: str, *, by: int) -> bool:
        term = _normal_term(term)
        return await self._guild_change(
            "DELETE FROM guild_blocklist WHERE guild_id = ? AND term = ?",
            (guild_id, term),
            by=by,
            action="guild.unblock_term",
            guild_id=guild_id,
            details={"term": term},
        )

    async def blocklist(self, guild_id: int) -> list[str]:
        rows = await self._fetchall(
            "SELECT term FROM guild_blocklist WHERE guild_id = ? ORDER BY term", (guild_id,)
        )
        return [row[0] for row in rows]

    async def _guild_change(
        self,
        sql: str,
        params: tuple[object, ...],
        *,
        by: int,
        action: str,
        guild_id: int,
        details: Mapping[str, Any],
    ) -> bool:
        """Run one change; audit it when it changed something. True when it did."""
        async with self._transaction() as conn:
            cursor = await conn.execute(sql, params)
            changed = cursor.rowcount > 0
            if changed:
                await write_audit(conn, self._clock(), by, action, f"guild:{guild_id}", details)
        return changed

    # ---- audit log -----------------------------------------------------------------------------

    async def audit(
        self,
        actor_id: int,
        action: str,
        target: str,
        details: Mapping[str, Any] | None = None,
        *,
        at: float | None = None,
    ) -> int:
        """Log an admin action (`target` such as "job:42"); the entry's id. `at` (Unix seconds,
        default now): when the action happened, for an entry written later than that."""
        async with self._transaction() as conn:
            when = self._clock() if at is None else at
            return await write_audit(conn, when, actor_id, action, target, details)

    async def recent_audit(self, limit: int = 20, *, target: str | None = None) -> list[AuditEntry]:
        """The newest audit entries first, optionally only those about `target`."""
        if target is None:
            rows = await self._fetchall(
                "SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = await self._fetchall(
                "SELECT * FROM audit_log WHERE target = ? ORDER BY id DESC LIMIT ?", (target, limit)
            )
        return [audit_entry(row) for row in rows]


def audit_entry(row: aiosqlite.Row) -> AuditEntry:
    return AuditEntry(
        row["id"],
        row["at"],
        row["actor_id"],
        row["action"],
        row["target"],
        json.loads(row["details"]),
    )


async def write_audit(
    conn: aiosqlite.Connection,
    now: float,
    actor_id: int,
    action: str,
    target: str,
    details: Mapping[str, Any] | None,
) -> int:
    """Append one audit-log entry inside the caller's transaction (`now` in Unix seconds);
    its id. Every audited admin action of every store goes through here."""
    cursor = await conn.execute(
        "INSERT INTO audit_log (at, actor_id, action, target, details) VALUES (?, ?, ?, ?, ?)",
        (now, actor_id, action, target, json.dumps(dict(details or {}), sort_keys=True)),
    )
    return cursor.lastrowid


def _normal_term(term: str) -> str:
    term = " ".join(term.split()).casefold()
    if not term or len(term) > MAX_TERM_CHARS:
        raise InvalidValue(f"A blocked term has 1 to {MAX_TERM_CHARS} characters.")
    return term
