-- The event outbox (spec §9): every event to send to the platform's webhook, stored in the
-- transaction of the change it reports, then delivered by a lease-holding worker. The id
-- orders a teleconsultation's events: one is not sent while an earlier one of the same
-- teleconsultation is still pending. No foreign key: an event outlives a deleted booking.
-- `state`: pending (to send, possibly leased, `due_at_ms` the next attempt), delivered, or
-- given_up (its schedule exhausted; kept for `telecons events --failed` and redelivery).
-- `body` is the exact JSON sent and signed; `last_answer` says what the last attempt got.
CREATE TABLE events (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id          TEXT   NOT NULL UNIQUE,
    teleconsultation_id TEXT   NOT NULL,
    type                TEXT   NOT NULL,
    body                TEXT   NOT NULL,
    state               TEXT   NOT NULL DEFAULT 'pending',
    attempts            BIGINT NOT NULL DEFAULT 0,
    due_at_ms           BIGINT NOT NULL,
    lease_owner         TEXT,
    lease_until_ms      BIGINT,
    last_answer         TEXT,
    created_at_ms       BIGINT NOT NULL,
    settled_at_ms       BIGINT
);
-- Partial indexes: the queries state these predicates as the same literals (a parameter in
-- their place would keep the planners from using them). What is due, oldest first:
CREATE INDEX events_due ON events (due_at_ms, id) WHERE state = 'pending';
-- A teleconsultation's pending chain (is there an earlier pending event?):
CREATE INDEX events_chain ON events (teleconsultation_id, id) WHERE state = 'pending';
-- Delivered events to prune, by age:
CREATE INDEX events_pruned ON events (settled_at_ms) WHERE state = 'delivered';
-- Given-up events, listed and redelivered by the operator:
CREATE INDEX events_failed ON events (id) WHERE state = 'given_up';
