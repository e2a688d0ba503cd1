-- Instants are epoch milliseconds (UTC) on both backends, so the same values round-trip.
CREATE TABLE teleconsultations (
    id                TEXT    PRIMARY KEY NOT NULL,
    version           INTEGER NOT NULL,
    state             TEXT    NOT NULL,
    participant_count INTEGER NOT NULL,
    start_at_ms       INTEGER NOT NULL,
    duration_secs     INTEGER NOT NULL,
    -- The room it should have (JSON RoomSpec; NULL: none wanted) and the room it has.
    desired_room        TEXT,
    desired_fingerprint TEXT,
    room_id           TEXT,
    room_fingerprint  TEXT,
    -- Set while the provisioner has work to do for it (a user or a room to create);
    -- background workers pick what is due.
    provision_due_at_ms INTEGER,
    -- Failed provisioning attempts since the last change: the retry delay doubles with each.
    provision_attempts  INTEGER NOT NULL DEFAULT 0,
    -- The instance working on it and until when (several instances share the work).
    lease_owner       TEXT,
    lease_until_ms    INTEGER,
    -- Set while a room for this fingerprint is being created: if the answer is lost (crash,
    -- timeout), the next attempt looks for the room by its description tag first.
    creating_fingerprint TEXT,
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    created_by        TEXT,
    updated_by        TEXT
);

CREATE TABLE participants (
    teleconsultation_id TEXT    NOT NULL REFERENCES teleconsultations (id) ON DELETE CASCADE,
    position            INTEGER NOT NULL,
    external_id         TEXT    NOT NULL,
    kaleyra_user_id     TEXT    NOT NULL,
    role                TEXT    NOT NULL,
    groups_json         TEXT    NOT NULL,
    full_name           TEXT,
    language            TEXT,
    link                TEXT,
    PRIMARY KEY (teleconsultation_id, position),
    UNIQUE (teleconsultation_id, external_id)
);

CREATE INDEX participants_by_external_id ON participants (external_id);

CREATE INDEX teleconsultations_provision_due ON teleconsultations (provision_due_at_ms)
    WHERE provision_due_at_ms IS NOT NULL;

CREATE INDEX teleconsultations_room ON teleconsultations (room_id) WHERE room_id IS NOT NULL;

-- Rooms to delete on Kaleyra (replaced, or of a deleted or incomplete teleconsultation).
-- Written in the same transaction that retires the room, so none is ever forgotten.
CREATE TABLE rooms_to_delete (
    room_id             TEXT    PRIMARY KEY,
    teleconsultation_id TEXT,
    due_at_ms           INTEGER NOT NULL,
    attempts            INTEGER NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    -- The instance deleting it right now, and until when.
    lease_owner         TEXT,
    lease_until_ms      INTEGER
);

CREATE TABLE kaleyra_users (
    external_id     TEXT    PRIMARY KEY NOT NULL,
    kaleyra_user_id TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
