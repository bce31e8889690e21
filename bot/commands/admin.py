"""`/admin ...`: run the studio — the queue, bans and limits, usage, the allowed channels and the
blocklist (and GPUs, models and workers: `bot.admin_gpus`; LoRAs: `bot.admin_loras`).

Every subcommand is guarded by the cog's `interaction_check` (`bot.permissions.require_admin`):
owner ids, admin roles or Manage Server, decided here on every call; a refused attempt is audited
and changes nothing. Every change is written to the audit log: storage audits bans, limits,
allowed channels and the blocklist in the same transaction as the change; this module audits what
the worker pool does (cancel, pause, resume) once it is done, through
`bot.audit` (an entry the database refuses is kept and written later, and the admin is told).
Views (queue, stats, lists) are not changes and are not audited.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.admin_gpus import AdminGpus
from bot.admin_loras import AdminLoras
from bot.blocklist import term_problem
from bot.cancelling import answer_cancel
from bot.commands.library import not_cancelled
from bot.errors import UserError
from bot.permissions import audit_admin_action, require_admin
from bot.ui.fit import DESCRIPTION, FittedEmbed, fit_lines
from bot.ui.listings import (
    ADMIN_COLOUR,
    admin_queue_embed,
    stats_embed,
)
from bot.ui.text import plain
from generation.jobs import Priority
from storage import KEEP, InvalidValue, UserSettings
from storage.credits import ERASED_PERSON, PERSON_DEFAULT, Period
from storage.people import MAX_REASON_CHARS, MAX_TERM_CHARS

if TYPE_CHECKING:
    from bot.app import AtelierBot

QUEUE_SHOWN = 15
STATS_SHOWN = 10
CHANNELS_SHOWN = 1500  # characters of channel mentions in one reply (of Discord's 2000)
PERIODS_DAYS = {"last 24 hours": 1, "last 7 days": 7, "last 30 days": 30, "all time": 0}
PriorityName = Literal["admin", "normal", "relax"]


def _embed(title: str, description: str = "") -> discord.Embed:
    return FittedEmbed(title=title, description=description, colour=ADMIN_COLOUR)


def _guild_id(interaction: discord.Interaction, what: str) -> int:
    """The server of a command about one server's `what` (its blocklist, its channels)."""
    if interaction.guild_id is None:
        raise UserError(f"Each server has its own {what}: use this command in the server.")
    return interaction.guild_id


def _spender(user_id: int) -> str:
    """Whose API spend a ledger row is: a mention, or no one's name for erased people."""
    return "erased people (no name kept)" if user_id == ERASED_PERSON else f"<@{user_id}>"


def _mentions(channel_ids: Iterable[int], limit: int = CHANNELS_SHOWN) -> str:
    return fit_lines([f"<#{channel}>" for channel in sorted(channel_ids)], limit, sep=", ")


def _limit(value: int | None, default: int) -> str:
    return str(value) if value is not None else f"{default} (default)"


class Admin(
    AdminGpus,
    AdminLoras,
    commands.GroupCog,
    group_name="admin",
    group_description="Run the studio (admins only).",
):
    """The `/admin` command group."""

    blocklist = app_commands.Group(
        name="blocklist", description="Words or patterns refused in prompts."
    )
    channels = app_commands.Group(name="channels", description="The channels that take jobs.")

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        await require_admin(self.bot, interaction)
        return True

    # ---- the queue ---------------------------------------------------------------------------

    @app_commands.command(name="queue", description="Every running job and the next waiting ones.")
    async def queue(self, interaction: discord.Interaction) -> None:
        snapshot = self.bot.pool.snapshot(waiting_limit=QUEUE_SHOWN)
        owners = {}
        for worker in snapshot.workers:
            if worker.job_id is not None:
                stored = await self.bot.database.get_job(worker.job_id, init_image=False)
                if stored is not None:
                    owners[worker.job_id] = stored.record.owner.user_id
        embed = admin_queue_embed(snapshot, owners)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel one job, or every job of one person.")
    @app_commands.describe(job="A job id.", user="Cancel all of this person's jobs.")
    async def cancel(
        self,
        interaction: discord.Interaction,
        job: app_commands.Range[int, 1] | None = None,
        user: discord.User | None = None,
    ) -> None:
        if (job is None) == (user is None):
            raise UserError("Give either a job id or a user.")
        if job is not None:
            record = await self.bot.studio.job(job, init_image=False)
            if record.status.is_final:
                raise UserError(f"Job `{job}` is already {record.status.value}.")
            await interaction.response.defer(ephemeral=True, thinking=True)  # a step may finish
            cancelled = self._cancel_job(interaction, job, record.owner.user_id)
            stalled = self.bot.studio.cancel_stalled(job_id=job)
            await answer_cancel(interaction, f"job `{job}`", stalled, cancelled)
            return
        assert user is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        stalled = self.bot.studio.cancel_stalled(user_id=user.id)
        cancelled = self._cancel_user(interaction, user)
        await answer_cancel(interaction, f"the jobs of {user.mention}", stalled, cancelled)

    async def _cancel_user(self, interaction: discord.Interaction, user: discord.User) -> str:
        """Cancel every job of `user` and audit it; the reply."""
        count = await self.bot.pool.cancel_user(user.id)
        note = ""
        if count:
            note = await audit_admin_action(
                self.bot,
                interaction,
                "user.cancel_jobs",
                f"user:{user.id}",
                {"cancelled": count},
            )
        return f"🚫 Cancelled {count} job{'s' if count != 1 else ''} of {user.mention}.{note}"

    async def _cancel_job(self, interaction: discord.Interaction, job: int, owner: int) -> str:
        """Cancel `job` (of `owner`) and audit it; the reply."""
        if not await self.bot.pool.cancel(job):
            return await not_cancelled(self.bot, job)
        note = await audit_admin_action(
            self.bot, interaction, "job.cancel", f"job:{job}", {"owner": owner}
        )
        return f"🚫 Cancelled job `{job}` of <@{owner}>.{note}"

    @app_commands.command(name="pause", description="Start no new job (running jobs finish).")
    async def pause(self, interaction: discord.Interaction) -> None:
        pool = self.bot.pool
        if pool.paused:
            raise UserError("The queue is already paused; `/admin resume` starts it again.")
        pool.pause()
        note = await audit_admin_action(self.bot, interaction, "pool.pause", "pool")
        snapshot = pool.snapshot(0)
        waiting = snapshot.queued + snapshot.api_queued  # API jobs wait for the resume too
        await interaction.response.send_message(
            f"⏸️ Paused. Running jobs finish; {waiting} waiting jobs stay "
            f"queued (and new ones are still accepted) until `/admin resume`.{note}",
            ephemeral=True,
        )

    @app_commands.command(name="resume", description="Start jobs again after a pause.")
    async def resume(self, interaction: discord.Interaction) -> None:
        pool = self.bot.pool
        if pool.hosted_paused:  # out of credits (402): API jobs were held
            pool.resume_hosted()
            await audit_admin_action(self.bot, interaction, "hosted.resume", "pool")
            if not pool.paused:
                await interaction.response.send_message(
                    "▶️ Resumed: API jobs are sent again.", ephemeral=True
                )
                return
        if not pool.paused:
            raise UserError("The queue is not paused.")
        pool.resume()
        note = await audit_admin_action(self.bot, interaction, "pool.resume", "pool")
        await interaction.response.send_message(
            f"▶️ Resumed: jobs start again.{note}", ephemeral=True
        )

    # ---- people ------------------------------------------------------------------------------

    @app_commands.command(name="ban", description="Stop someone from using the bot.")
    @app_commands.describe(user="Who to ban.", reason="Why (they are told).")
    async def ban(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS],
    ) -> None:
        try:
            await self.bot.database.ban(user.id, reason, by=interaction.user.id)
        except InvalidValue as error:
            raise UserError(str(error)) from None
        waiting, running = self.bot.pool.user_counts(user.id)
        await interaction.response.send_message(
            f"🔨 Banned {user.mention}: they can no longer use the bot. "
            f"Their {waiting + running} unfinished job(s) continue; "
            "`/admin cancel user:` stops them.",
            ephemeral=True,
        )

    @app_commands.command(name="unban", description="Let someone use the bot again.")
    @app_commands.describe(user="Who to unban.")
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        if not (await self.bot.database.get_user(user.id)).banned:
            raise UserError(f"{user.mention} is not banned.")
        await self.bot.database.unban(user.id, by=interaction.user.id)
        await interaction.response.send_message(f"✅ Unbanned {user.mention}.", ephemeral=True)

    @app_commands.command(
        name="limits", description="Someone's queue limits and scheduling (no options: show)."
    )
    @app_commands.describe(
        user="Whose limits.",
        max_queued="Most jobs they may have waiting.",
        max_running="Most jobs of theirs that may run at once.",
        weight="Their share of GPU time (2 = twice an ordinary share).",
        priority="Their class: admin jobs go first, relax jobs last.",
        reset="Back to the installation's defaults (before applying the other options).",
        daily_credits="Their API budget in credits per UTC day (-1: back to the default).",
    )
    async def limits(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        max_queued: app_commands.Range[int, 1, 10_000] | None = None,
        max_running: app_commands.Range[int, 1, 10_000] | None = None,
        weight: app_commands.Range[float, 0.01, 100.0] | None = None,
        priority: PriorityName | None = None,
        reset: bool = False,
        daily_credits: app_commands.Range[float, -1.0, 1e9] | None = None,
    ) -> None:
        if daily_credits is not None and daily_credits < 0 and daily_credits != -1:
            raise UserError(
                "`daily_credits` is a number of credits, 0 or more, or -1 to go back to the "
                "default budget. Nothing was changed."
            )
        if daily_credits is not None:
            credits = None if daily_credits == -1 else daily_credits
            await self.bot.database.set_budget(user.id, Period.DAY, credits, by=interaction.user.id)
        changes: dict[str, object] = {}
        if reset:
            changes = {
                "max_queued": None,
                "max_running": None,
                "weight": 1.0,
                "priority": Priority.NORMAL,
            }
        given = {
            "max_queued": max_queued,
            "max_running": max_running,
            "weight": weight,
            "priority": None if priority is None else Priority(priority),
        }
        changes |= {name: value for name, value in given.items() if value is not None}
        database = self.bot.database
        if changes:
            standing = await database.set_limits(
                user.id,
                by=interaction.user.id,
                max_queued=changes.get("max_queued", KEEP),  # type: ignore[arg-type]
                max_running=changes.get("max_running", KEEP),  # type: ignore[arg-type]
                weight=changes.get("weight", KEEP),  # type: ignore[arg-type]
                priority=changes.get("priority", KEEP),  # type: ignore[arg-type]
            )
        else:
            standing = await database.get_user(user.id)
        title = "Limits changed" if changes or daily_credits is not None else "Limits"
        embed = self._limits_embed(title, user, standing)
        if self.bot.settings.catalogue.hosted:
            budgets = await self.bot.database.budgets()
            own = budgets.get((user.id, Period.DAY))
            default = budgets.get((PERSON_DEFAULT, Period.DAY))
            shown = own if own is not None else default
            embed.add_field(
                name="API credits per day",
                value="no budget"
                if shown is None
                else f"{shown:g}" + ("" if own is not None else " (default)"),
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    def _limits_embed(
        self, title: str, user: discord.abc.User, standing: UserSettings
    ) -> discord.Embed:
        defaults = self.bot.settings.limits
        embed = _embed(title, f"{user.mention}{' · **banned**' if standing.banned else ''}")
        embed.add_field(name="Max waiting", value=_limit(standing.max_queued, defaults.max_queued))
        embed.add_field(
            name="Max running", value=_limit(standing.max_running, defaults.max_running)
        )
        embed.add_field(name="Weight", value=f"{standing.weight:g}")
        embed.add_field(name="Priority", value=standing.priority.value)
        return embed

    # ---- usage -------------------------------------------------------------------------------

    @app_commands.command(
        name="stats", description="Jobs, images and GPU time per person and model."
    )
    @app_commands.describe(period="Which period (default: the last 7 days).")
    @app_commands.choices(
        period=[app_commands.Choice(name=n, value=d) for n, d in PERIODS_DAYS.items()]
    )
    async def stats(
        self, interaction: discord.Interaction, period: app_commands.Choice[int] | None = None
    ) -> None:
        days = 7 if period is None else period.value
        name = next(n for n, d in PERIODS_DAYS.items() if d == days)
        now = time.time()
        # The query reads every job of the period (all time: the whole history): answer first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        stats = await self.bot.database.stats(now - days * 86_400 if days else 0.0, now + 1)
        embed = stats_embed(name, stats.by_user, stats.by_model, STATS_SHOWN)
        if self.bot.settings.catalogue.hosted:
            since = now - days * 86_400 if days else 0.0
            spend = await self.bot.database.spend_by_person_and_model(since)
            lines = [
                f"{_spender(row.user_id)} · {row.model}: {row.credits:g} credits, {row.jobs} jobs"
                for row in spend
            ]
            notes = self.bot.services.hosted_notes[-1:]
            embed.add_field(
                name="API credits by person and model",
                value=fit_lines([*(f"⚠️ {n}" for n in notes), *lines], 1024, empty="none"),
                inline=False,
            )
        await interaction.followup.send(embed=embed, ephemeral=True)

    # ---- allowed channels --------------------------------------------------------------------

    @channels.command(name="allow", description="Take jobs in this channel (then only in those).")
    @app_commands.describe(channel="The channel.")
    async def channels_allow(
        self, interaction: discord.Interaction, channel: discord.TextChannel
    ) -> None:
        guild_id = _guild_id(interaction, "channels")
        allowed = await self.bot.studio.allowed_channels(guild_id)
        if channel.id in allowed:
            raise UserError(f"{channel.mention} already takes jobs.")
        await self.bot.database.allow_channel(guild_id, channel.id, by=interaction.user.id)
        allowed.add(channel.id)
        await interaction.response.send_message(
            f"✅ {channel.mention} takes jobs now. Only these channels do: {_mentions(allowed)}.",
            ephemeral=True,
        )

    @channels.command(name="disallow", description="Stop taking jobs in a channel allowed here.")
    @app_commands.describe(channel="The channel.")
    async def channels_disallow(
        self, interaction: discord.Interaction, channel: discord.TextChannel
    ) -> None:
        guild_id = _guild_id(interaction, "channels")
        if channel.id in self.bot.settings.allowed_channel_ids:
            raise UserError(
                f"{channel.mention} is allowed by the configuration file "
                "(`allowed_channel_ids`); remove it there."
            )
        if not await self.bot.database.disallow_channel(
            guild_id, channel.id, by=interaction.user.id
        ):
            raise UserError(
                f"{channel.mention} was not allowed with `/admin channels allow`; "
                "`/admin channels list` shows which are."
            )
        allowed = await self.bot.studio.allowed_channels(guild_id)
        now = f"only these channels do: {_mentions(allowed)}" if allowed else "every channel does"
        await interaction.response.send_message(
            f"🚫 {channel.mention} takes no more jobs; {now}.", ephemeral=True
        )

    @channels.command(name="list", description="The channels that take jobs in this server.")
    async def channels_list(self, interaction: discord.Interaction) -> None:
        guild_id = _guild_id(interaction, "channels")
        configured = set(self.bot.settings.allowed_channel_ids)
        added = set(await self.bot.database.allowed_channels(guild_id)) - configured
        if not configured | added:
            body = "Every channel takes jobs (`/admin channels allow` limits them to some)."
        else:
            body = "Only these channels take jobs:"
            if configured:
                body += f"\nset in the configuration file: {_mentions(configured)}"
            if added:
                body += f"\nallowed with `/admin channels allow`: {_mentions(added)}"
        await interaction.response.send_message(embed=_embed("Channels", body), ephemeral=True)

    # ---- the blocklist -----------------------------------------------------------------------

    @blocklist.command(name="add", description="Refuse prompts containing a word or pattern.")
    @app_commands.describe(
        term="A word or phrase; * stands for any letters (gore* blocks gorefest)."
    )
    async def blocklist_add(
        self, interaction: discord.Interaction, term: app_commands.Range[str, 1, MAX_TERM_CHARS]
    ) -> None:
        problem = term_problem(term)
        if problem:
            raise UserError(problem)
        try:
            added = await self.bot.database.block_term(
                _guild_id(interaction, "blocklist"), term, by=interaction.user.id
            )
        except InvalidValue as error:
            raise UserError(str(error)) from None
        reply = (
            f"🚫 Prompts containing {plain(term, 200)} are now refused here."
            if added
            else f"{plain(term, 200)} was already blocked."
        )
        await interaction.response.send_message(reply, ephemeral=True)

    @blocklist.command(name="remove", description="Allow a blocked word or pattern again.")
    @app_commands.describe(term="The blocked term, as listed.")
    async def blocklist_remove(
        self, interaction: discord.Interaction, term: app_commands.Range[str, 1, MAX_TERM_CHARS]
    ) -> None:
        try:
            removed = await self.bot.database.unblock_term(
                _guild_id(interaction, "blocklist"), term, by=interaction.user.id
            )
        except InvalidValue as error:
            raise UserError(str(error)) from None
        if not removed:
            raise UserError(
                f"{plain(term, 200)} is not on the blocklist; `/admin blocklist list` shows it."
            )
        reply = f"✅ {plain(term, 200)} is allowed again."
        await interaction.response.send_message(reply, ephemeral=True)

    @blocklist.command(name="list", description="The blocked words and patterns of this server.")
    async def blocklist_list(self, interaction: discord.Interaction) -> None:
        terms = await self.bot.database.blocklist(_guild_id(interaction, "blocklist"))
        body = fit_lines([plain(term) for term in terms], DESCRIPTION - 1, sep=", ")
        await interaction.response.send_message(
            embed=_embed("Blocklist", body if terms else "Nothing is blocked."), ephemeral=True
        )


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Admin(bot))
