-- What decided a job's pixels besides its request (generation.jobs.RunFacts as JSON): the model
-- revision, the diffusers and torch versions, device type, precision, batching, and where the
-- prompt was cut. NULL for jobs made before this was recorded; they stay rerunnable.
ALTER TABLE jobs ADD COLUMN run_facts TEXT;
