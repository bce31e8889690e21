"""API spending: each hosted job's tasks, the spend ledger, and the owner's credit budgets.

A job's estimated cost is reserved before it is sent, against every budget at once, counting the
jobs still in flight at their reservation and finished ones at what they cost; the replies' cost
settles it. Periods are UTC days and months, by the reservation's time. Credits: 1 = $0.01.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from generation.errors import OverBudget
from generation.hosted.tasks import HostedTask
from storage.errors import InvalidValue, StorageError
from storage.people import write_audit
from storage.store import Store

SERVER = 0  # the user_id of the server's budgets
PERSON_DEFAULT = -1  # the user_id of the per-person daily budget everyone has unless set
ERASED_PERSON = -2  # the ledger's user_id for spend of an erased person (migration 0004)
_CHARGE = "COALESCE(spent, reserved)"


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"


class BudgetExceeded(StorageError, OverBudget):
    """A job no budget may take; the message is for the person who asked. `left` is what the
    budget has left once `waiting` (the estimates of jobs accepted but not yet sent) is
    counted."""

    def __init__(
        self,
        whose: str,
        period: Period,
        limit: float,
        left: float,
        cost: float,
        waiting: float = 0.0,
    ) -> None:
        self.whose, self.period, self.limit, self.left, self.cost = whose, period, limit, left, cost
        self.waiting = waiting
        span = "today" if period is Period.DAY else "this month"
        counted = f" after the jobs still waiting ({waiting:g} credits)" if waiting > 0 else ""
        super().__init__(
            f"This job would cost about {cost:g} credits, but {whose} budget has "
            f"{max(0.0, left):g} of {limit:g} credits left {span} (UTC){counted}."
        )


@dataclass(frozen=True, slots=True)
class Spend:
    user_id: int
    model: str
    credits: float
    jobs: int


def period_start(now: float, period: Period) -> float:
    """The Unix time the UTC day or month holding `now` began."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.MONTH:
        start = start.replace(day=1)
    return start.timestamp()


class Credits(Store):
    # ---- tasks (generation.hosted.tasks.TaskStore) -------------------------------------------

    async def save_hosted_task(self, job_id: int, task: HostedTask) -> None:
        await self._write_one(
            "INSERT OR REPLACE INTO hosted_tasks (job_id, idx, task_id, polling_url, cost, "
            "input_mp, output_mp, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                task.index,
                task.task_id,
                task.polling_url,
                task.cost,
                task.input_mp,
                task.output_mp,
                task.submitted_at,
            ),
        )

    async def forget_hosted_task(self, job_id: int, index: int) -> None:
        await self._write_one(
            "DELETE FROM hosted_tasks WHERE job_id = ? AND idx = ?", (job_id, index)
        )

    async def hosted_tasks(self, job_id: int) -> list[HostedTask]:
        rows = await self._fetchall(
            "SELECT * FROM hosted_tasks WHERE job_id = ? ORDER BY idx", (job_id,)
        )
        return [
            HostedTask(
                index=row["idx"],
                task_id=row["task_id"],
                polling_url=row["polling_url"],
                cost=row["cost"],
                input_mp=row["input_mp"],
                output_mp=row["output_mp"],
                submitted_at=row["submitted_at"],
            )
            for row in rows
        ]

    # ---- budgets --------------------------------------------------------------------------------

    async def set_budget(
        self, user_id: int, period: Period, credits: float | None, *, by: int
    ) -> None:
        """Set (or with None remove) a budget: `SERVER` per day or month, `PERSON_DEFAULT` or a
        person's id per day. Audited."""
        if user_id != SERVER and period is not Period.DAY:
            raise InvalidValue("A person's budget is per day.")
        if credits is not None and not 0 <= credits < 1e12:  # also refuses NaN
            raise InvalidValue("A budget is a number of credits, 0 or more.")
        async with self._transaction() as conn:
            if credits is None:
                await conn.execute(
                    "DELETE FROM credit_budgets WHERE user_id = ? AND period = ?",
                    (user_id, period.value),
                )
            else:
                await conn.execute(
                    "INSERT OR REPLACE INTO credit_budgets (user_id, period, credits) "
                    "VALUES (?, ?, ?)",
                    (user_id, period.value, credits),
                )
            details = {"period": period.value, "credits": credits}
            await write_audit(conn, self._clock(), by, "set_budget", f"budget:{user_id}", details)

    async def budgets(self) -> dict[tuple[int, Period], float]:
        rows = await self._fetchall("SELECT * FROM credit_budgets")
        return {(row["user_id"], Period(row["period"])): row["credits"] for row in rows}

    async def reserve(self, job_id: int, user_id: int, model: str, credits: float) -> None:
        """Reserve `credits` for `job_id`, or raise `BudgetExceeded` (nothing written) when the
        person's daily budget or the server's daily or monthly one cannot take them. A job
        reserved before (resumed after a restart) keeps its reservation. Raises `InvalidValue`
        for `credits` that are not a finite number, 0 or more."""
        if not 0 <= credits < 1e12:  # also refuses NaN
            raise InvalidValue("A reservation is a number of credits, 0 or more.")
        now = self._clock()
        async with self._transaction() as conn:
            held = await conn.execute_fetchall(
                "SELECT 1 FROM credit_ledger WHERE job_id = ?", (job_id,)
            )
            if held:
                return
            await _within_budgets(conn, now, user_id, credits)
            await conn.execute(
                "INSERT INTO credit_ledger (job_id, user_id, model, reserved, reserved_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (job_id, user_id, model, credits, now),
            )

    async def check_budgets(
        self,
        user_id: int,
        credits: float,
        waiting: Sequence[tuple[int, int, float]] = (),
    ) -> None:
        """Raise `BudgetExceeded` where a new job of `credits` for `user_id` would pass a
        budget once the ledger and `waiting` are counted: (job id, user id, estimated credits)
        of the API jobs accepted and not yet ended; those the ledger holds already (reserved
        when sent) count once, by the ledger. Writes nothing: `reserve` checks again when the
        job is sent, since budgets may change meanwhile."""
        if not 0 <= credits < 1e12:
            raise InvalidValue("A job's estimate is a number of credits, 0 or more.")
        now = self._clock()
        async with self._snapshot() as conn:
            first = min((job_id for job_id, _, _ in waiting), default=None)
            ledger = (
                set()
                if first is None
                else {
                    row[0]
                    for row in await conn.execute_fetchall(
                        "SELECT job_id FROM credit_ledger WHERE job_id >= ?", (first,)
                    )
                }
            )
            pending = [(user, cost) for job_id, user, cost in waiting if job_id not in ledger]
            await _within_budgets(conn, now, user_id, credits, pending)

    async def settle(self, job_id: int, spent: float) -> None:
        """Replace `job_id`'s reservation by what it cost (0 for a job never sent; a negative
        cost counts as 0). Raises `InvalidValue` for NaN or an infinity."""
        if not math.isfinite(spent):  # NaN would settle at nothing
            raise InvalidValue("A job's cost is a number of credits.")
        await self._write_one(
            "UPDATE credit_ledger SET spent = ?, settled_at = ? WHERE job_id = ?",
            (max(0.0, spent), self._clock(), job_id),
        )

    async def spent(self, since: float, user_id: int | None = None) -> float:
        """Credits charged (in flight at their reservation) since `since`, by one person or
        everyone."""
        async with self._snapshot() as conn:
            return await _charged(conn, since, user_id)

    async def spend_by_person_and_model(self, since: float) -> list[Spend]:
        rows = await self._fetchall(
            f"SELECT user_id, model, SUM({_CHARGE}) AS credits, COUNT(*) AS jobs "
            "FROM credit_ledger WHERE reserved_at >= ? GROUP BY user_id, model "
            "ORDER BY credits DESC, user_id, model",
            (since,),
        )
        return [Spend(row["user_id"], row["model"], row["credits"], row["jobs"]) for row in rows]


async def _within_budgets(
    conn,
    now: float,
    user_id: int,
    credits: float,
    pending: Sequence[tuple[int, float]] = (),
) -> None:
    """Raise `BudgetExceeded` where `credits` more for `user_id`, on top of what the ledger
    charges and `pending` ((user id, credits) not in the ledger yet), would pass the person's
    daily budget or the server's daily or monthly one."""
    budgets = {
        (row["user_id"], row["period"]): row["credits"]
        for row in await conn.execute_fetchall("SELECT * FROM credit_budgets")
    }
    person = budgets.get((user_id, "day"), budgets.get((PERSON_DEFAULT, "day")))
    checks = [("your daily", user_id, Period.DAY, person)] + [
        (f"the server's {'daily' if p is Period.DAY else 'monthly'}", None, p, limit)
        for p in Period
        if (limit := budgets.get((SERVER, p.value))) is not None
    ]
    for whose, person_id, period, limit in checks:
        if limit is None:
            continue
        used = await _charged(conn, period_start(now, period), person_id)
        waiting = sum(cost for user, cost in pending if person_id in (None, user))
        if used + waiting + credits > limit + 1e-9:
            raise BudgetExceeded(whose, period, limit, limit - used - waiting, credits, waiting)


async def _charged(conn, since: float, user_id: int | None) -> float:
    sql = f"SELECT COALESCE(SUM({_CHARGE}), 0) FROM credit_ledger WHERE reserved_at >= ?"
    params: tuple = (since,)
    if user_id is not None:
        sql += " AND user_id = ?"
        params += (user_id,)
    rows = await conn.execute_fetchall(sql, params)
    return float(rows[0][0])
