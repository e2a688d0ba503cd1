-- `Idempotency-Key` on `POST /teleconsultation` (spec §4.13): per scope (a caller, or the
-- requests without one) and key, the body's fingerprint and the first request's answer.
-- While that request runs, `owner` holds the key until `lease_until_ms` (past it, the
-- request died with its instance and the key is free); then either `teleconsultation_id`
-- (booked: written in the booking's own transaction) or `answer_status` and `answer_body`
-- (a 4xx, as sent). Kept 24 hours from `created_at_ms`, then swept.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    owner TEXT,
    lease_until_ms BIGINT,
    teleconsultation_id TEXT,
    answer_status BIGINT,
    answer_body TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
