-- Locks a subtask's child before it is linked to its parent step: the
-- child's finalisation locks the same row, so linking and finalising are
-- ordered and the parent step is completed exactly once, by one of them.
SELECT status, parent_step_id FROM tasks WHERE task_id = $1 FOR UPDATE
