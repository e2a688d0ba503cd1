-- The last creation attempt of a teleconsultation (settling a lost creation answer from a
-- shared listing of Kaleyra's rooms needs it) is found without a scan of every attempt.
CREATE INDEX room_attempts_by_teleconsultation ON room_attempts (teleconsultation_id, created_at_ms);
