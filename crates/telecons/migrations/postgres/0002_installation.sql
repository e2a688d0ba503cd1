-- This database's installation: made once, by the first instance that starts on it. Its id
-- is in every room tag, so that clean-up only ever touches this installation's rooms.
-- `mode` is 'service' or 'demo': neither starts on the other's database.
CREATE TABLE installation (
    singleton     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    id            TEXT    NOT NULL,
    mode          TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL
);
