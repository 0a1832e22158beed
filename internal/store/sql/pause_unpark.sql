-- After a pause is lifted (pause_delete.sql): the steps it parked return to
-- the ready queue at the time they became ready (so they run in their
-- original order), with one NOTIFY ($3) to wake the claimers. Steps still
-- covered by another pause (the namespace stays paused while one template
-- resumes) are parked again by the claim.
WITH unparked AS (
  UPDATE workflow_steps w
  SET parked = NULL, runnable_at = coalesce(w.parked_at, now()), parked_at = NULL, updated_at = now()
  FROM tasks t
  WHERE t.namespace_name = $1 AND ($2 = '' OR t.task_name = $2) AND t.status IN ('pending', 'in_progress')
    AND w.task_id = t.task_id AND w.parked = 'paused' AND w.status = 'pending'
  RETURNING 1
)
SELECT count(*), (SELECT count(*) FROM (SELECT pg_notify($3, '') WHERE EXISTS (SELECT 1 FROM unparked)) n)
FROM unparked
