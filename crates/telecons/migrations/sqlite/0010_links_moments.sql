-- The links' moment of each teleconsultation (start − IMMUTABLE_PERIOD_MS), told to the
-- platform once per start date (spec §9's timed events): 'due' until then; 'missing' once
-- `room_missing` was told and `links_open` is still owed (the room is not ready yet); NULL
-- once told, or when it no longer can be (deleted, ended). A change of the start date makes
-- it 'due' again. Existing live teleconsultations are 'due': those already over are cleared
-- by the first pass of the worker, without an event.
ALTER TABLE teleconsultations ADD COLUMN links_event TEXT DEFAULT 'due';
UPDATE teleconsultations SET links_event = NULL WHERE state <> 'active';
-- What may be told at a time, by start (the worker reads those starting before now + period).
-- The query states the same predicate.
CREATE INDEX teleconsultations_links_due ON teleconsultations (start_at_ms, id)
    WHERE links_event IS NOT NULL;
