UPDATE named_tasks SET superseded_by = $2 WHERE named_task_id = $1;
