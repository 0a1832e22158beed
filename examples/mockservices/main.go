// Command mockservices serves the fake APIs the examples' workflows call —
// a shop (01), a data warehouse (02), user, billing and notification
// services (03), a support desk, payment gateway and ledger (04), an order
// back end and a webhook receiver (05) — with failure modes that can be
// switched per endpoint:
//
//	go run ./examples/mockservices                 # listens on localhost:8090
//	go run ./examples/mockservices -addr 127.0.0.1:0   # a free port, printed on stdout
//
// Modes (see README.md): ok, flaky, slow, 429, 503 and down, set for an
// endpoint with PUT /admin/modes/{endpoint} or for one request with the
// query parameters mode, failures, retry_after and delay. Every call is
// recorded in GET /admin/calls, which the examples' tests read.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", envOr("MOCK_ADDR", "localhost:8090"), "listen address (MOCK_ADDR)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, logger); err != nil {
		logger.Error("mockservices failed", slog.String("error", err.Error()))
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(addr string, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// The tests read this line to learn the port.
	fmt.Printf("mockservices listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: New(logger).Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
