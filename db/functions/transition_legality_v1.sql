-- Legal state changes for tasks and workflow steps. They are Tasker's state
-- machines plus what a lease-based engine needs (step in_progress → pending
-- when a lease expires or is released; error → cancelled for both). The
-- transition tables check every row against these functions, so an illegal
-- change is refused by the database even if a code path forgets the rule.
-- A NULL from_state is the initial transition, which must land in pending.
CREATE OR REPLACE FUNCTION task_transition_is_legal(from_state text, to_state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE from_state
    WHEN 'pending'           THEN to_state IN ('in_progress', 'cancelled', 'error')
    WHEN 'in_progress'       THEN to_state IN ('complete', 'error', 'cancelled', 'pending')
    WHEN 'error'             THEN to_state IN ('pending', 'resolved_manually', 'cancelled')
    WHEN 'complete'          THEN to_state IN ('cancelled')
    WHEN 'resolved_manually' THEN to_state IN ('cancelled')
    ELSE false
  END OR (from_state IS NULL AND to_state = 'pending')
$$;

CREATE OR REPLACE FUNCTION step_transition_is_legal(from_state text, to_state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE from_state
    WHEN 'pending'     THEN to_state IN ('in_progress', 'error', 'cancelled', 'resolved_manually')
    WHEN 'in_progress' THEN to_state IN ('complete', 'error', 'cancelled', 'pending')
    WHEN 'error'       THEN to_state IN ('pending', 'resolved_manually', 'cancelled')
    ELSE false
  END OR (from_state IS NULL AND to_state = 'pending')
$$;
