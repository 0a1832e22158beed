package main

import (
	"context"
	"fmt"
	"io"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/server"
)

func runServe(ctx context.Context, args []string, env config.LookupEnv, stdout, stderr io.Writer) int {
	cfg, rest, code := parseSettings("serve", "serve [flags]", config.Server, args, env, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "taskerd serve: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	if cfg.DatabaseURL == "" {
		fmt.Fprintln(stderr, "taskerd serve: setting TASKER_DATABASE_URL (--database-url) is required")
		return exitUsage
	}
	if err := cfg.CheckServeAuth(); err != nil {
		fmt.Fprintf(stderr, "taskerd serve: %v\n", err)
		return exitUsage
	}
	logger := newLogger(cfg, stderr)
	if cfg.AuthMode == config.AuthNone {
		logger.Warn("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach this server may create, cancel and read every task")
	}
	srv, err := server.New(server.Config{Settings: cfg, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "taskerd serve: %v\n", err)
		return exitUsage
	}
	if err := srv.Run(ctx); err != nil {
		logger.Error("taskerd serve failed", "error", err.Error())
		return exitError
	}
	return exitOK
}
