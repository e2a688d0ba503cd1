-- The teleconsultations still waiting for their room (first one, or a replacement): few at
-- any time, counted every few seconds (`rooms_missing_at_start`) without reading the others.
CREATE INDEX teleconsultations_awaiting_room ON teleconsultations (start_at_ms)
    WHERE state = 'active' AND desired_fingerprint IS NOT NULL
      AND (room_fingerprint IS NULL OR room_fingerprint <> desired_fingerprint);
