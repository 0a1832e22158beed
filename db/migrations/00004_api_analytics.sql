-- What the REST API reads beyond the engine's own queries: an index for
-- listing tasks newest first, an index of failed attempts for the
-- analytics, the critical-path function behind a task's dependency view,
-- and the analytics functions (Tasker's, with real percentiles).
--
-- tasks (created_at, task_id) backs GET /tasker/tasks, whose default order
-- and keyset cursor are (created_at, task_id). created_at never changes, so
-- the index does not stop the engine's status updates from being HOT.
-- Failed attempts are a small share of step transitions: the partial index
-- lets the analytics find a period's failures without reading the rest.

-- +goose Up
CREATE INDEX tasks_created_at ON tasks (created_at, task_id);
CREATE INDEX workflow_step_transitions_errors ON workflow_step_transitions (created_at)
  WHERE to_state = 'error';

-- +goose StatementBegin
-- +taskerd include functions/get_task_critical_path_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_analytics_metrics_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_slowest_tasks_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_slowest_steps_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_most_retried_steps_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_error_patterns_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_blocking_steps_v1.sql
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION IF EXISTS get_blocking_steps(timestamptz, integer, text, text, text);
DROP FUNCTION IF EXISTS get_error_patterns(timestamptz, integer, text, text, text);
DROP FUNCTION IF EXISTS get_most_retried_steps(timestamptz, integer, text, text, text);
DROP FUNCTION IF EXISTS get_slowest_steps(timestamptz, integer, text, text, text);
DROP FUNCTION IF EXISTS get_slowest_tasks(timestamptz, integer, text, text, text);
DROP FUNCTION IF EXISTS get_analytics_metrics(timestamptz);
DROP FUNCTION IF EXISTS get_task_critical_path(uuid);
DROP INDEX IF EXISTS workflow_step_transitions_errors;
DROP INDEX IF EXISTS tasks_created_at;
