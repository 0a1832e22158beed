package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/pgcluster"
	"github.com/taskerd/taskerd/internal/server"
)

// devDatabase is the database `taskerd dev` creates in its private cluster.
const devDatabase = "taskerd"

// runDev boots a private PostgreSQL, migrates it and serves. On a signal it
// stops the server first, then the cluster, so no postgres process outlives
// it.
func runDev(ctx context.Context, args []string, env config.LookupEnv, stdout, stderr io.Writer) int {
	cfg, rest, code := parseSettings("dev", "dev [flags]", config.Dev, args, env, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "taskerd dev: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	logger := newLogger(cfg, stderr)
	if cfg.AuthMode == config.AuthNone {
		logger.Warn("AUTHENTICATION IS OFF: taskerd dev serves the API to anyone who can reach " + cfg.HTTPAddr +
			"; set TASKER_AUTH_MODE=jwt (docs/auth.md) before exposing it")
	}
	cluster, err := pgcluster.New(pgcluster.Config{
		Dir:            cfg.PGDir,
		Port:           cfg.PGPort,
		BinDir:         cfg.PGBinDir,
		InstallMissing: true,
		Logger:         logger,
	})
	if err != nil {
		fmt.Fprintf(stderr, "taskerd dev: %v\n", err)
		return exitError
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := cluster.Stop(stopCtx); err != nil {
			fmt.Fprintf(stderr, "taskerd dev: stop postgres: %v\n", err)
		}
	}()
	if err := cluster.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "taskerd dev: %v\n", err)
		return exitError
	}
	if err := cluster.EnsureDatabase(ctx, devDatabase); err != nil {
		fmt.Fprintf(stderr, "taskerd dev: %v\n", err)
		return exitError
	}
	cfg.DatabaseURL = cluster.URL(devDatabase)
	migrateCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = server.MigrateWithRetry(migrateCtx, logger, migrate.Config{DatabaseURL: cfg.DatabaseURL, Schema: cfg.DBSchema, Logger: logger})
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "taskerd dev: migrate: %v\n", err)
		return exitError
	}
	srv, err := server.New(server.Config{Settings: cfg, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "taskerd dev: %v\n", err)
		return exitError
	}
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "taskerd dev: %v\n", err)
		return exitError
	}
	base := "http://" + displayAddr(srv.Addr())
	fmt.Fprintf(stdout, `
taskerd dev is running (PostgreSQL %d under %s)
  API:         %s/tasker
  Swagger UI:  %s/tasker/api-docs/
  Health:      %s/tasker/health/ready
  Database:    %s
  Auth:        %s
Press Ctrl-C to stop the server and the database.

`, cluster.Version(), cfg.PGDir, base, base, base, cfg.DatabaseURL, authBanner(cfg))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-srv.Done():
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelStop()
	if err := srv.Stop(stopCtx); err != nil {
		fmt.Fprintf(stderr, "taskerd dev: %v\n", err)
		return exitError
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "taskerd dev: %v\n", runErr)
		return exitError
	}
	return exitOK
}

// displayAddr turns ":8080" or "[::]:8080" into "localhost:8080" for the
// banner: a URL people can click.
func displayAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// authBanner says in dev's banner whether the API checks tokens.
func authBanner(cfg *config.Config) string {
	if cfg.AuthMode == config.AuthNone {
		return "OFF (TASKER_AUTH_MODE=none): anyone who can reach the port controls every task"
	}
	return "JWT (issuer " + cfg.JWTIssuer + ", audience " + cfg.JWTAudience + ")"
}
