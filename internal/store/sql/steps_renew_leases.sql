-- Extends the leases of steps this replica still runs. A row missing from
-- the result was lost (cancelled, or expired and taken by another replica):
-- the caller cancels that handler.
UPDATE workflow_steps w
SET lease_expires_at = now() + $3::bigint * interval '1 millisecond'
FROM unnest($1::uuid[], $2::int[]) AS i(id, attempt)
WHERE w.workflow_step_id = i.id AND w.attempts = i.attempt AND w.status = 'in_progress' AND w.lease_owner = $4
RETURNING w.workflow_step_id
