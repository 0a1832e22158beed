-- Tasker's analysis functions: step readiness, task execution context and
-- dependency levels, single and batch forms. They read the tables and change
-- nothing; each lives in its own file in db/functions.
--
-- Order matters: SQL function bodies are checked when created, and the
-- single forms are built on the batch forms, the task contexts on the step
-- readiness.

-- +goose Up
-- +goose StatementBegin
-- +taskerd include functions/get_step_readiness_status_batch_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_step_readiness_status_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_task_execution_contexts_batch_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_task_execution_context_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/calculate_dependency_levels_v1.sql
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION IF EXISTS calculate_dependency_levels(uuid);
DROP FUNCTION IF EXISTS get_task_execution_context(uuid);
DROP FUNCTION IF EXISTS get_task_execution_contexts_batch(uuid[]);
DROP FUNCTION IF EXISTS get_step_readiness_status(uuid, uuid[]);
DROP FUNCTION IF EXISTS get_step_readiness_status_batch(uuid[]);
