-- Lifts the pause of a namespace ($2 = '') or a template. A claim that is
-- parking steps for this pause holds the pause row (FOR KEY SHARE, see
-- steps_claim.sql), so this waits for it to commit: the unparking statement
-- that follows (pause_unpark.sql), with a snapshot taken after the wait,
-- then sees the steps that claim parked. In one statement with the
-- unparking, it would not, and they would stay parked with no pause left.
DELETE FROM handler_pauses WHERE namespace_name = $1 AND task_name = $2
