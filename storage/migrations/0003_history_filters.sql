-- The filters of a /history page, kept by a short key so the page's buttons (whose custom_id
-- holds at most 100 characters) work for any model name and search text the options accept.
CREATE TABLE history_filters (
    key TEXT PRIMARY KEY,      -- first 16 hex digits of the SHA-256 of [model, text] as JSON
    model TEXT,
    text TEXT,
    created_at REAL NOT NULL
);
-- /admin stats and /info read usage from this index alone (never the jobs' request JSON).
CREATE INDEX jobs_usage ON jobs (queued_at, user_id, model, started_at, gpu_seconds);
