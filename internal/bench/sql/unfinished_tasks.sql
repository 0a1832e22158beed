SELECT count(*) FROM tasks WHERE status NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
