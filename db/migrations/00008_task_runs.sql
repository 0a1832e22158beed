-- A task's runs: 1, plus one each time a failed task is sent back to
-- pending by hand (a retry, or a step action that reopens it). Each run
-- that reaches a final state is finalised anew; traces give each
-- finalisation its own span, told apart by the run, so that a retried task
-- never emits the same span twice. Kept on the row, and returned by the
-- statements that finalise, so the finish path reads it for free.

-- +goose Up
ALTER TABLE tasks ADD COLUMN runs integer NOT NULL DEFAULT 1 CHECK (runs >= 1);

-- +goose Down
ALTER TABLE tasks DROP COLUMN runs;
