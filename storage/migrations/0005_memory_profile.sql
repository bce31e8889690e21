-- The memory profile a job ran with (generation.profiles: "full", "fp8", "nf4-offload", ...), so a
-- rerun uses the same one. Jobs made before profiles existed ran with everything in the model's
-- own precision on one device: "full".
ALTER TABLE jobs ADD COLUMN memory_profile TEXT NOT NULL DEFAULT 'full';
