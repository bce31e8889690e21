"""Budgets at their edges, on a real SQLite file: reservations count with settled spend, a job
that would pass a budget is refused with what is left, settlement replaces the estimate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from generation.jobs import JobOwner
from generation.request import build_request
from storage import Database, InvalidValue
from storage.credits import (
    ERASED_PERSON,
    PERSON_DEFAULT,
    SERVER,
    BudgetExceeded,
    Period,
    period_start,
)
from tests.storage.conftest import Clock

# 2026-03-31 23:59:00 UTC: one minute before a new day and a new month.
EDGE = dt.datetime(2026, 3, 31, 23, 59, tzinfo=dt.UTC).timestamp()
ADMIN = 1


@pytest.fixture
async def setup(tmp_path: Path, catalogue) -> tuple[Database, Clock, object]:
    clock = Clock(EDGE)
    db = await Database.open(tmp_path / "a.db", clock=clock)

    async def job(user_id: int = 7) -> int:
        request = build_request(catalogue, model="flux-pro-1.1", prompt="x", seed=1)
        return await db.create_job(request, JobOwner(user_id=user_id))

    yield db, clock, job
    await db.close()


async def test_a_person_can_spend_exactly_their_budget_and_not_a_credit_more(setup) -> None:
    db, _, job = setup
    await db.set_budget(PERSON_DEFAULT, Period.DAY, 10, by=ADMIN)
    await db.reserve(await job(), 7, "flux-pro-1.1", 4)
    await db.reserve(await job(), 7, "flux-kontext-max", 6)  # 10 of 10: allowed
    with pytest.raises(BudgetExceeded) as refused:
        await db.reserve(await job(), 7, "flux-2-pro", 0.5)
    assert refused.value.left == 0
    assert "your daily budget has 0 of 10 credits left today" in str(refused.value)
    await db.reserve(await job(8), 8, "flux-pro-1.1", 4)  # another person has their own


async def test_settlement_replaces_the_estimate_and_frees_the_difference(setup) -> None:
    db, _, job = setup
    await db.set_budget(SERVER, Period.DAY, 10, by=ADMIN)
    first = await job()
    await db.reserve(first, 7, "flux-2-pro", 9)  # in flight: counts at its reservation
    with pytest.raises(BudgetExceeded, match="server's daily budget has 1 of 10"):
        await db.reserve(await job(9), 9, "flux-2-pro", 3)
    await db.settle(first, 4.5)  # the reply's cost
    await db.reserve(await job(9), 9, "flux-2-pro", 5.5)
    assert await db.spent(0) == 10


async def test_a_person_override_beats_the_default_and_zero_refuses_everything(setup) -> None:
    db, _, job = setup
    await db.set_budget(PERSON_DEFAULT, Period.DAY, 100, by=ADMIN)
    await db.set_budget(7, Period.DAY, 0, by=ADMIN)
    with pytest.raises(BudgetExceeded):
        await db.reserve(await job(), 7, "flux-pro-1.1", 4)
    await db.set_budget(7, Period.DAY, None, by=ADMIN)  # back to the default
    await db.reserve(await job(), 7, "flux-pro-1.1", 4)
    audit = await db.recent_audit(target="budget:7")
    assert [entry.details["credits"] for entry in audit] == [None, 0]


async def test_the_day_and_month_turn_at_utc_midnight(setup) -> None:
    db, clock, job = setup
    await db.set_budget(PERSON_DEFAULT, Period.DAY, 8, by=ADMIN)
    await db.set_budget(SERVER, Period.MONTH, 12, by=ADMIN)
    await db.reserve(await job(), 7, "flux-kontext-max", 8)
    clock.advance(59)  # 23:59:59 on the 31st: the same day
    with pytest.raises(BudgetExceeded, match="your daily"):
        await db.reserve(await job(), 7, "flux-pro-1.1", 4)
    clock.advance(1)  # 1 April 00:00:00: a new day and a new month
    await db.reserve(await job(), 7, "flux-kontext-max", 8)
    with pytest.raises(BudgetExceeded, match="server's monthly budget has 4 of 12"):
        await db.reserve(await job(8), 8, "flux-kontext-max", 8)
    assert period_start(clock.now, Period.MONTH) == clock.now


async def test_spend_by_person_and_model(setup) -> None:
    db, _, job = setup
    for user, model, cost in [(7, "flux-2-pro", 3), (7, "flux-2-pro", 4.5), (8, "flux-2-max", 7)]:
        job_id = await job(user)
        await db.reserve(job_id, user, model, cost)
        await db.settle(job_id, cost)
    rows = await db.spend_by_person_and_model(0)
    assert [(r.user_id, r.model, r.credits, r.jobs) for r in rows] == [
        (7, "flux-2-pro", 7.5, 2),
        (8, "flux-2-max", 7, 1),
    ]
    assert await db.spent(0, 8) == 7


@pytest.mark.parametrize("credits", [-1, float("nan"), float("inf")])
async def test_a_budget_must_be_a_number_of_credits(setup, credits: float) -> None:
    db, _, _ = setup
    with pytest.raises(InvalidValue):
        await db.set_budget(SERVER, Period.DAY, credits, by=ADMIN)


async def test_a_person_budget_is_per_day(setup) -> None:
    db, _, _ = setup
    with pytest.raises(InvalidValue, match="per day"):
        await db.set_budget(7, Period.MONTH, 10, by=ADMIN)


async def test_a_resumed_job_keeps_its_reservation(setup) -> None:
    db, _, job = setup
    await db.set_budget(PERSON_DEFAULT, Period.DAY, 4, by=ADMIN)
    job_id = await job()
    await db.reserve(job_id, 7, "flux-pro-1.1", 4)
    await db.reserve(job_id, 7, "flux-pro-1.1", 4)  # after a restart: not counted twice
    assert await db.spent(0, 7) == 4


async def test_erasing_a_person_keeps_what_bfl_charged_in_the_servers_budgets(setup) -> None:
    db, _, job = setup
    await db.set_budget(SERVER, Period.DAY, 10, by=ADMIN)
    await db.set_budget(SERVER, Period.MONTH, 10, by=ADMIN)
    erased_job = await job(user_id=7)
    await db.reserve(erased_job, 7, "flux-pro-1.1", 4)
    await db.settle(erased_job, 8)

    assert await db.delete_user(7) == 1

    assert await db.spent(period_start(EDGE, Period.MONTH)) == 8
    assert await db.spent(period_start(EDGE, Period.DAY), 7) == 0  # no longer theirs
    spend = await db.spend_by_person_and_model(period_start(EDGE, Period.DAY))
    assert [(s.user_id, s.credits) for s in spend] == [(ERASED_PERSON, 8)]
    with pytest.raises(BudgetExceeded):
        await db.reserve(await job(user_id=8), 8, "flux-pro-1.1", 4)  # 8 + 4 > 10


@pytest.mark.parametrize("credits", [float("nan"), float("inf"), -1.0])
async def test_a_reservation_or_cost_that_is_not_a_number_of_credits_is_refused(
    setup, credits: float
) -> None:
    db, _, job = setup
    job_id = await job()
    with pytest.raises(InvalidValue):
        await db.reserve(job_id, 7, "flux-pro-1.1", credits)
    await db.reserve(job_id, 7, "flux-pro-1.1", 4)
    if credits != credits:
        with pytest.raises(InvalidValue):
            await db.settle(job_id, credits)
    assert await db.spent(0) == 4


async def test_erasing_a_person_removes_their_budget_and_its_audit_but_no_other_budget(
    setup,
) -> None:
    db, _, job = setup
    await db.set_budget(7, Period.DAY, 2, by=ADMIN)
    await db.set_budget(8, Period.DAY, 3, by=ADMIN)
    await db.set_budget(PERSON_DEFAULT, Period.DAY, 12, by=ADMIN)
    await db.set_budget(SERVER, Period.MONTH, 100, by=ADMIN)

    await db.delete_user(7)

    assert await db.budgets() == {
        (8, Period.DAY): 3,
        (PERSON_DEFAULT, Period.DAY): 12,
        (SERVER, Period.MONTH): 100,
    }
    audited = await db.recent_audit(50)
    assert "budget:7" not in [entry.target for entry in audited]
    assert "budget:8" in [entry.target for entry in audited]
    # the same Discord id coming back later has the default budget, not the erased one
    await db.reserve(await job(user_id=7), 7, "flux-pro-1.1", 12)


async def test_the_check_at_accept_counts_waiting_jobs_once_and_writes_nothing(setup) -> None:
    db, _, job = setup
    await db.set_budget(PERSON_DEFAULT, Period.DAY, 12, by=ADMIN)
    await db.set_budget(SERVER, Period.DAY, 20, by=ADMIN)
    sent, mine, theirs = await job(), await job(), await job(user_id=8)
    await db.reserve(sent, 7, "flux-pro-1.1", 4)  # in the ledger and still live: counted once
    waiting = [(sent, 7, 4.0), (mine, 7, 4.0), (theirs, 8, 8.0)]

    await db.check_budgets(7, 4, waiting)  # 4 + 4 + 4 = 12 of 12
    with pytest.raises(BudgetExceeded) as refused:
        await db.check_budgets(7, 5, waiting)
    assert (refused.value.left, refused.value.waiting) == (4, 4)
    assert str(refused.value).endswith(
        "your daily budget has 4 of 12 credits left today (UTC) after the jobs still waiting "
        "(4 credits)."
    )
    with pytest.raises(BudgetExceeded, match="server's daily budget has 4 of 20"):
        await db.check_budgets(9, 5, waiting)  # everyone's waiting jobs count for the server
    assert await db.spent(0) == 4  # nothing was reserved
