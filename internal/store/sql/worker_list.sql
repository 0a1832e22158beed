-- Workers seen within $1 ms, with the remote steps each holds now.
WITH listed AS (
  SELECT worker_id, handlers, first_seen_at, last_seen_at, coalesce(last_replica, '') AS last_replica
  FROM workers
  WHERE last_seen_at > now() - $1::bigint * interval '1 millisecond'
  ORDER BY worker_id
  LIMIT $2
), in_flight AS (
  SELECT w.lease_owner,
         jsonb_agg(jsonb_build_object('step_id', w.workflow_step_id, 'task_id', w.task_id, 'attempt', w.attempts,
                                      'handler', w.handler, 'step_name', w.name,
                                      'claimed_at', w.last_attempted_at, 'lease_expires_at', w.lease_expires_at)
                   ORDER BY w.last_attempted_at, w.workflow_step_id) AS steps
  FROM workflow_steps w
  WHERE w.status = 'in_progress' AND w.queue <> '' AND w.lease_owner IN (SELECT worker_id FROM listed)
  GROUP BY w.lease_owner
)
SELECT l.worker_id, l.handlers, l.first_seen_at, l.last_seen_at, l.last_replica, coalesce(f.steps, '[]'::jsonb)
FROM listed l LEFT JOIN in_flight f ON f.lease_owner = l.worker_id
ORDER BY l.worker_id
