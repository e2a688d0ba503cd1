-- The agenda (`GET /teleconsultations`, spec §4.12) pages in (start, id) order by keyset: a
-- page reads its rows off an index in that order from the cursor on, so its cost is the
-- page's size whatever the number stored.
--
-- A participant's page: each participant row carries its teleconsultation's start (kept with
-- the record: participants are rewritten with every change of it), so that one index holds
-- a user's teleconsultations in agenda order. `WHERE external_id = ? AND start_at_ms >= ?
-- ORDER BY start_at_ms, teleconsultation_id LIMIT ?` is one range of it: no sort, and no
-- read of the user's other teleconsultations. It also serves every lookup by user id, so it
-- replaces the index on the id alone.
ALTER TABLE participants ADD COLUMN start_at_ms INTEGER NOT NULL DEFAULT 0;
UPDATE participants SET start_at_ms =
    (SELECT t.start_at_ms FROM teleconsultations t WHERE t.id = participants.teleconsultation_id);
DROP INDEX participants_by_external_id;
CREATE INDEX participants_by_user_and_start
    ON participants (external_id, start_at_ms, teleconsultation_id);
-- A `bookingGroups` caller's page: the live teleconsultations in agenda order. Partial, so
-- that deleted ones (kept as records) are never walked past; the queries state
-- `state = 'active'` as written here, which is how both planners match a partial index.
CREATE INDEX teleconsultations_live_by_start ON teleconsultations (start_at_ms, id)
    WHERE state = 'active';
