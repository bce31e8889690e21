-- Reference images (FLUX.2 [klein], FLUX.1 Kontext, the API models' input images) are kept like
-- init images: once each by content in init_images, which from now on holds every image a job
-- takes as input; a job lists its references here, in order. The request JSON leaves them out.
-- Jobs of the API models stored before this kept their references as base64 inside the request
-- JSON: generation.request still reads those, so they rerun as they were made.
CREATE TABLE job_references (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    sha256 TEXT NOT NULL REFERENCES init_images (sha256),
    PRIMARY KEY (job_id, position)
) WITHOUT ROWID;

CREATE INDEX job_references_by_image ON job_references (sha256);
