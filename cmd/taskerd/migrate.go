package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/migrate"
)

func runMigrate(ctx context.Context, args []string, env config.LookupEnv, stdout, stderr io.Writer) int {
	const synopsis = "migrate up|down|status|version [--to N] [flags]"
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" {
		if len(args) == 0 {
			fmt.Fprintf(stderr, "taskerd migrate: want an action: up, down, status or version\n")
			return exitUsage
		}
		_, _, code := parseSettings("migrate", synopsis, config.Migrate, args, env, stdout, stderr)
		return code
	}
	action := args[0]
	// --to is the action's own flag, parsed alongside the settings.
	to := int64(-1)
	names := config.Migrate
	fs := flag.NewFlagSet("taskerd migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("to", "target version", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("--to wants a version number >= 0")
		}
		to = n
		return nil
	})
	p := config.NewParser(fs, names)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: taskerd %s\n\n  --to N  target version (up: apply up to N; down: revert down to N, 0 = everything)\n\nSettings (flag, environment variable, default):\n", synopsis)
		p.PrintSettings(stdout)
	}
	cfg, err := p.Parse(args[1:], env)
	if err == flag.ErrHelp {
		fs.Usage()
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "taskerd migrate: %v\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "taskerd migrate: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	switch action {
	case "up", "down", "status", "version":
	default:
		fmt.Fprintf(stderr, "taskerd migrate: unknown action %q: want up, down, status or version\n", action)
		return exitUsage
	}
	if to >= 0 && action != "up" && action != "down" {
		fmt.Fprintf(stderr, "taskerd migrate: --to goes with up or down\n")
		return exitUsage
	}
	if cfg.DatabaseURL == "" {
		fmt.Fprintln(stderr, "taskerd migrate: setting TASKER_DATABASE_URL (--database-url) is required")
		return exitUsage
	}
	logger := newLogger(cfg, stderr)
	m, err := migrate.New(ctx, migrate.Config{DatabaseURL: cfg.DatabaseURL, Schema: cfg.DBSchema, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "taskerd migrate: %v\n", err)
		return exitError
	}
	defer m.Close()
	switch action {
	case "up":
		if to >= 0 {
			err = m.UpTo(ctx, to)
		} else {
			err = m.Up(ctx)
		}
	case "down":
		if to >= 0 {
			err = m.DownTo(ctx, to)
		} else {
			err = m.Down(ctx)
		}
	case "status":
		var list []migrate.Status
		list, err = m.Status(ctx)
		for _, s := range list {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			fmt.Fprintf(stdout, "%5d  %-8s %s\n", s.Version, state, s.Name)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "taskerd migrate %s: %v\n", action, err)
		return exitError
	}
	v, err := m.Version(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "taskerd migrate: %v\n", err)
		return exitError
	}
	if action == "version" {
		fmt.Fprintln(stdout, v)
	} else {
		fmt.Fprintf(stdout, "schema %s at version %d (this binary's latest: %d)\n", cfg.DBSchema, v, migrate.LatestVersion())
	}
	return exitOK
}
