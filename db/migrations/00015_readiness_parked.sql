-- Step readiness knows parked steps (migration 00013): a step parked by a
-- pause or a concurrency limit is pending with no runnable time, which v1
-- reported as ready to run. v2 reports it not ready, with the reason
-- (paused, concurrency_limit, task_concurrency_limit); the single form and
-- the task execution contexts are built on it and follow.

-- +goose Up
-- +goose StatementBegin
-- +taskerd include functions/get_step_readiness_status_batch_v2.sql
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
-- +taskerd include functions/get_step_readiness_status_batch_v1.sql
-- +goose StatementEnd
