-- LoRAs an admin turned off with /admin loras disable (the configuration lists them; an
-- admin's choice survives restarts). A LoRA without a row here is as the configuration says.
-- Jobs need no change: a request stored before LoRAs and compel reads back with no LoRA and the
-- "plain" prompt encoder (generation.request), so it reruns as it was made.
CREATE TABLE disabled_loras (
    name TEXT PRIMARY KEY,
    disabled_at REAL NOT NULL,
    disabled_by INTEGER NOT NULL
) WITHOUT ROWID;
