// Command refund-policy-worker is a remote worker for taskerd, written with
// the public client package: it serves the queue remote:refund_policy,
// deciding how much of a refund request is approved.
//
//	TASKER_URL=http://localhost:8080 go run ./examples/workers/go
//
// TASKER_TOKEN, when set, is sent as its bearer token.
//
// It runs until SIGINT or SIGTERM, then lets the steps in hand finish.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/taskerd/taskerd/pkg/client"
)

// maxAutomaticCents is the largest refund approved without a person.
const maxAutomaticCents = 100_000

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
	cfg := client.Config{BaseURL: base}
	// With TASKER_AUTH_MODE=jwt the worker needs a token whose role holds
	// refund_policy:tasker.worker:claim (docs/auth.md).
	if tok := os.Getenv("TASKER_TOKEN"); tok != "" {
		cfg.Header = http.Header{"Authorization": {"Bearer " + tok}}
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	w, err := client.NewWorker(c, client.WorkerConfig{
		ID:          os.Getenv("WORKER_ID"), // default: host-pid
		Concurrency: 4,
		Handlers:    map[string]client.HandlerFunc{"remote:refund_policy": checkRefundPolicy},
		Logger:      logger,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return w.Run(ctx)
}

// checkRefundPolicy approves refunds up to maxAutomaticCents; larger ones
// fail for good, to be resolved by a person.
func checkRefundPolicy(ctx context.Context, step *client.Step) (any, error) {
	var task struct {
		AmountCents  int64  `json:"amount_cents"`
		CustomerTier string `json:"customer_tier"`
	}
	if err := json.Unmarshal(step.Context, &task); err != nil {
		return nil, client.Permanent(fmt.Errorf("the task context is not a refund request: %w", err))
	}
	var ticket struct {
		PaymentID string `json:"payment_id"`
	}
	if raw, ok := step.ParentResults["validate_refund_request"]; ok {
		if err := json.Unmarshal(raw, &ticket); err != nil {
			return nil, client.Permanent(fmt.Errorf("validate_refund_request results: %w", err))
		}
	}
	if task.AmountCents <= 0 {
		return nil, client.Permanent(errors.New("amount_cents must be above zero"))
	}
	if task.AmountCents > maxAutomaticCents {
		return nil, client.Permanent(fmt.Errorf("%d cents needs a person's approval", task.AmountCents))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A business event the template declares (custom_events): it counts in
	// tasker_custom_events_total, and its value (the amount) feeds the
	// tasker_custom_event_value histogram.
	step.Emit("refund.approved", map[string]any{"value": float64(task.AmountCents) / 100, "tier": task.CustomerTier})
	return map[string]any{
		"approved":              true,
		"approved_amount_cents": task.AmountCents,
		"payment_id":            ticket.PaymentID,
		"policy":                "standard-" + task.CustomerTier,
		"worker":                "go",
	}, nil
}
