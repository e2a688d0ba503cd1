-- The events' claim reads the pending events oldest first by id (a teleconsultation's earlier
-- events before its later ones), a bounded window at a time, so that its cost does not grow
-- with the backlog; the index by due time it read before is no longer used.
CREATE INDEX events_pending ON events (id) WHERE state = 'pending';
DROP INDEX events_due;
