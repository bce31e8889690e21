-- Hosted (Black Forest Labs API) jobs: each image's task, stored before it is waited for, so a
-- restart polls the stored polling_url instead of paying for the image again.
CREATE TABLE hosted_tasks (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL CHECK (idx >= 0),
    task_id TEXT NOT NULL,
    polling_url TEXT NOT NULL,
    cost REAL,          -- credits, from the submit reply
    input_mp REAL,
    output_mp REAL,
    submitted_at REAL NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

-- The spend ledger: one row per API job, a reservation (the estimate from published prices)
-- until the replies' cost settles it. Budgets count `spent` where settled, else `reserved`.
-- Credits BFL charged stay spent when the job is erased (jobs are hard-deleted only when their
-- person is): no foreign key (job ids are AUTOINCREMENT, never reused), and the trigger below
-- keeps the row under the anonymous user_id -2 (`storage.credits.ERASED_PERSON`).
CREATE TABLE credit_ledger (
    job_id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    model TEXT NOT NULL,
    reserved REAL NOT NULL CHECK (reserved >= 0),
    spent REAL CHECK (spent >= 0),   -- NULL while in flight
    reserved_at REAL NOT NULL,       -- the budget period a job counts in
    settled_at REAL
);
CREATE INDEX credit_ledger_by_time ON credit_ledger (reserved_at, user_id, model);

CREATE TRIGGER credit_ledger_keeps_spend BEFORE DELETE ON jobs
BEGIN
    UPDATE credit_ledger SET user_id = -2 WHERE job_id = OLD.id;
END;

-- Credit budgets set by the owner: the server's per day and per month (user_id 0), a person's
-- per day (user_id > 0 overrides the default, which is user_id -1). No row: no limit.
CREATE TABLE credit_budgets (
    user_id INTEGER NOT NULL,
    period TEXT NOT NULL CHECK (period IN ('day', 'month')),
    credits REAL NOT NULL CHECK (credits >= 0),
    PRIMARY KEY (user_id, period)
) WITHOUT ROWID;
