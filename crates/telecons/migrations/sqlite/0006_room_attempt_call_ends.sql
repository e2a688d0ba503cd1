-- When a room creation's call ended without an answer we could use (a 5xx after it took
-- effect, a dropped connection, a timeout): a listing of Kaleyra's rooms taken shortly
-- after shows the room it may have made, so its recovery need not wait out the longest a
-- call can take. NULL while the call is in flight, or when its answer was read.
ALTER TABLE room_attempts ADD COLUMN call_ended_at_ms BIGINT;
