-- Every room creation this database asked Kaleyra for, recorded before the call; its id is in
-- the room's tag. Clean-up (orphan sweep, recovery of lost answers) acts only on rooms whose
-- attempt is here: a copy of the database never takes the original's later rooms for its
-- own. Kept: a row is what proves a room this database's.
CREATE TABLE room_attempts (
    id                  TEXT    PRIMARY KEY,
    teleconsultation_id TEXT    NOT NULL,
    fingerprint         TEXT    NOT NULL,
    created_at_ms       BIGINT  NOT NULL
);

-- Which database the installation was recorded in (PostgreSQL: the cluster's system
-- identifier and the database name; SQLite: the file's canonical path). NULL until the
-- first start after this migration records it. Started on another database (a copy, a
-- move, a restore), the service refuses until `telecons adopt-database` says which it is.
ALTER TABLE installation ADD COLUMN database_identity TEXT;
