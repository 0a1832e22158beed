// Command preferences-worker is example 03's remote worker: it serves the
// queue remote:user_preferences, initialising a new user's preferences
// from the step's handler_config defaults and the user's plan.
//
//	TASKER_URL=http://localhost:8080 go run ./examples/03-microservices-coordination/worker
//
// It runs until SIGINT or SIGTERM, then lets the steps in hand finish.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"syscall"

	"github.com/taskerd/taskerd/pkg/client"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(logger); err != nil {
		logger.Error("worker failed", slog.String("error", err.Error()))
		os.Exit(1)
	}
}

func run(logger *slog.Logger) error {
	base := os.Getenv("TASKER_URL")
	if base == "" {
		base = "http://localhost:8080"
	}
	c, err := client.New(client.Config{BaseURL: base})
	if err != nil {
		return err
	}
	w, err := client.NewWorker(c, client.WorkerConfig{
		ID:          os.Getenv("WORKER_ID"), // default: host-pid
		Concurrency: 4,
		Handlers:    map[string]client.HandlerFunc{"remote:user_preferences": initializePreferences},
		Logger:      logger,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return w.Run(ctx)
}

// initializePreferences merges the template's defaults with the plan's
// extras; a step without the account's results fails for good, since a
// retry would not find them either.
func initializePreferences(ctx context.Context, step *client.Step) (any, error) {
	var cfg struct {
		Defaults map[string]any `json:"defaults"`
	}
	if len(step.HandlerConfig) > 0 {
		if err := json.Unmarshal(step.HandlerConfig, &cfg); err != nil {
			return nil, client.Permanent(fmt.Errorf("handler_config: %w", err))
		}
	}
	var account struct {
		UserID string `json:"user_id"`
		Plan   string `json:"plan"`
	}
	raw, ok := step.ParentResults["create_user_account"]
	if !ok {
		return nil, client.Permanent(errors.New("no create_user_account results"))
	}
	if err := json.Unmarshal(raw, &account); err != nil || account.UserID == "" {
		return nil, client.Permanent(fmt.Errorf("create_user_account results %s: %v", raw, err))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefs := maps.Clone(cfg.Defaults)
	if prefs == nil {
		prefs = map[string]any{}
	}
	if account.Plan == "pro" {
		prefs["priority_support"] = true
	}
	return map[string]any{"user_id": account.UserID, "preferences": prefs, "worker": "go"}, nil
}
