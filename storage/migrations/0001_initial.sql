-- Atelier schema, version 1. Applied in one transaction by storage.schema.

-- Init images (img2img sources) are kept once each, by content, outside the request JSON, so a
-- history page does not drag megabytes of base64 along and ten variations share one copy.
CREATE TABLE init_images (
    sha256 TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;

-- AUTOINCREMENT: a job id is never reused, even after a deletion, so an old Discord button
-- can never point at somebody else's job.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    guild_id INTEGER,
    channel_id INTEGER,
    priority TEXT NOT NULL CHECK (priority IN ('admin', 'normal', 'relax')),
    weight REAL NOT NULL,
    max_queued INTEGER,
    max_running INTEGER,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent_job INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    request TEXT NOT NULL,  -- GenerationRequest JSON, init image left out (see init_image)
    init_image TEXT REFERENCES init_images (sha256),
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker TEXT,
    gpu_seconds REAL,
    error TEXT,
    delivered_at REAL,
    deleted_at REAL
);
CREATE INDEX jobs_by_user ON jobs (user_id, id);
CREATE INDEX jobs_by_user_model ON jobs (user_id, model, id);
CREATE INDEX jobs_unfinished ON jobs (id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_undelivered ON jobs (id) WHERE delivered_at IS NULL;
CREATE INDEX jobs_by_parent ON jobs (parent_job) WHERE parent_job IS NOT NULL;
CREATE INDEX jobs_by_queued_at ON jobs (queued_at);
CREATE INDEX jobs_by_init_image ON jobs (init_image) WHERE init_image IS NOT NULL;

-- The file of an image lives at images/<sha256[:2]>/<sha256>.png; identical images share it.
CREATE TABLE images (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL CHECK (idx >= 0),
    seed INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    message_id INTEGER,
    attachment_id INTEGER,
    pruned_at REAL,  -- file removed by retention; the row (and seed) stays for a rerun
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE INDEX images_by_sha ON images (sha256) WHERE pruned_at IS NULL;
CREATE INDEX images_unpruned_by_age ON images (created_at) WHERE pruned_at IS NULL;

-- Every Discord message that shows a job, so a reaction on any of them finds it.
CREATE TABLE job_messages (
    message_id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    channel_id INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX job_messages_by_job ON job_messages (job_id);

CREATE TABLE users (
    user_id INTEGER PRIMARY KEY,
    banned_at REAL,
    ban_reason TEXT,
    banned_by INTEGER,
    max_queued INTEGER,
    max_running INTEGER,
    weight REAL NOT NULL DEFAULT 1.0,
    priority TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('admin', 'normal', 'relax')),
    default_model TEXT,
    default_aspect TEXT,
    default_negative_prompt TEXT
);

-- A guild with no row here allows every channel.
CREATE TABLE guild_channels (
    guild_id INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
) WITHOUT ROWID;

CREATE TABLE guild_blocklist (
    guild_id INTEGER NOT NULL,
    term TEXT NOT NULL,
    PRIMARY KEY (guild_id, term)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,  -- e.g. "user:123", "guild:7", "job:42"
    details TEXT NOT NULL  -- JSON object
);
CREATE INDEX audit_by_target ON audit_log (target);
CREATE INDEX audit_by_actor ON audit_log (actor_id);
