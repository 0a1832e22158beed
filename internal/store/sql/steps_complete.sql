-- Completes finished attempts. Only rows still in_progress at the same
-- attempt change (the attempt is the fencing token): a replica that lost its
-- lease and reports late changes nothing. Rows are locked in id order so
-- concurrent flushes cannot deadlock on each other: the input sorted, then
-- one key lookup per row that locks it. (FOR UPDATE OF a LATERAL subquery
-- locks inside it, as the join reaches each row: an ORDER BY above the join
-- sorts the result, not the locks. Unsorted, two replicas' flushes locked
-- shared rows in opposite orders and waited a deadlock_timeout.)
-- OFFSET 0 keeps the state test below out of the lookup: pushed into it,
-- "status = 'in_progress'" let the planner read the lease index (every
-- running step) for each input row instead of one primary-key probe, which
-- a stale estimate of few running steps made look cheaper; with 3,000
-- running steps a flush took seconds and every replica stalled behind it.
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS i(id, attempt, results)
), locked AS (
  SELECT w.workflow_step_id, i.results
  FROM (SELECT * FROM i ORDER BY id) i,
       LATERAL (SELECT * FROM workflow_steps w WHERE w.workflow_step_id = i.id OFFSET 0 FOR UPDATE) w
  WHERE w.status = 'in_progress' AND w.attempts = i.attempt
), done AS (
  UPDATE workflow_steps w
  SET status = 'complete', results = l.results, processed_at = now(),
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  -- Only the locked rows, which carry their inputs: joining them back to
  -- i, whose size the planner cannot know, gave a nested loop over both
  -- (quadratic in the flush size: 3.4 s for 3,462 steps).
  FROM locked l
  WHERE w.workflow_step_id = l.workflow_step_id
  RETURNING w.workflow_step_id, w.task_id, w.attempts
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'in_progress', 'complete', jsonb_build_object('attempt', attempts, 'replica', $4::text)
  FROM done
)
SELECT workflow_step_id, task_id, attempts FROM done
