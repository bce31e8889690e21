"""Which configured LoRAs an admin turned off (`/admin loras enable|disable`), audited."""

from __future__ import annotations

from storage.people import write_audit
from storage.store import Store


class LoraSwitches(Store):
    async def disabled_loras(self) -> frozenset[str]:
        """The names of the LoRAs admins turned off."""
        rows = await self._fetchall("SELECT name FROM disabled_loras")
        return frozenset(row[0] for row in rows)

    async def set_lora_enabled(self, name: str, enabled: bool, *, by: int) -> bool:
        """Turn a LoRA on or off for new jobs, audited (`lora.enable` / `lora.disable` on
        `lora:NAME`) in the same transaction; False when it already was so."""
        async with self._transaction() as conn:
            if enabled:
                cursor = await conn.execute("DELETE FROM disabled_loras WHERE name = ?", (name,))
            else:
                cursor = await conn.execute(
                    "INSERT OR IGNORE INTO disabled_loras (name, disabled_at, disabled_by) "
                    "VALUES (?, ?, ?)",
                    (name, self._clock(), by),
                )
            changed = cursor.rowcount > 0
            if changed:
                action = "lora.enable" if enabled else "lora.disable"
                await write_audit(conn, self._clock(), by, action, f"lora:{name}", {})
        return changed
