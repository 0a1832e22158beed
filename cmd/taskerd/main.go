// Command taskerd is a workflow-orchestration server backed by PostgreSQL.
//
//	taskerd serve              run the HTTP API (and the engine)
//	taskerd migrate up|down|status|version
//	taskerd templates validate|list
//	taskerd dev                private PostgreSQL + migrate + serve, for a laptop
//	taskerd scaffold           a template, a remote worker and its test, to start from
//	taskerd version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/taskerd/taskerd/internal/config"
)

// Exit codes: 2 is a usage or settings error, as flag and most CLIs use.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `taskerd: workflow orchestration on PostgreSQL

Usage:
  taskerd serve [flags]                   serve the API under /tasker
  taskerd migrate up [--to N] [flags]     apply migrations
  taskerd migrate down [--to N] [flags]   revert the last migration, or down to version N (0: all)
  taskerd migrate status|version [flags]  list migrations / print the schema version
  taskerd templates validate FILE|DIR…    check task template files (no database needed; exit 1 when invalid)
  taskerd templates list [flags]          list the registered task templates
  taskerd dev [flags]                     boot a private PostgreSQL under ./.taskerd/pg, migrate, serve
  taskerd scaffold --kind KIND --namespace NS --name NAME [--worker go|python] [--dir DIR]
                                          write a template, a remote worker and its test (KIND: api, calculation, database, notification)
  taskerd bench [--workload NAME] [--quick] [--json FILE]   run the benchmarks (see taskerd bench --help)
  taskerd bench compare OLD.json NEW.json                    the change of every figure
  taskerd version                         print version, commit and Go version

Run "taskerd COMMAND --help" for the settings of a command.
`

// run is main without the process: tests call it with their own args,
// environment and writers.
func run(ctx context.Context, args []string, env config.LookupEnv, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, env, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, env, stdout, stderr)
	case "dev":
		return runDev(ctx, rest, env, stdout, stderr)
	case "templates":
		return runTemplates(ctx, rest, env, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, env, stdout, stderr)
	case "scaffold":
		return runScaffold(rest, stdout, stderr)
	case "version", "--version", "-v":
		return runVersion(stdout)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "taskerd: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// parseSettings parses a command's flags; code is -1 when the command should
// go on, else the exit code to return.
func parseSettings(name, synopsis string, names []string, args []string, env config.LookupEnv, stdout, stderr io.Writer) (cfg *config.Config, rest []string, code int) {
	fs := flag.NewFlagSet("taskerd "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	p := config.NewParser(fs, names)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: taskerd %s\n\nSettings (flag, environment variable, default):\n", synopsis)
		p.PrintSettings(stdout)
	}
	cfg, err := p.Parse(args, env)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return nil, nil, exitOK
	case err != nil:
		fmt.Fprintf(stderr, "taskerd %s: %v\n", name, err)
		return nil, nil, exitUsage
	}
	return cfg, fs.Args(), -1
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With(slog.String("service", "taskerd"))
}
