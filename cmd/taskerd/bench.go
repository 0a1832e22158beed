package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"

	"github.com/taskerd/taskerd/internal/bench"
	"github.com/taskerd/taskerd/internal/config"
)

const benchUsage = `Usage:
  taskerd bench [--workload NAME] [--quick] [--duration D] [--json FILE] [--cpuprofile FILE]
  taskerd bench compare OLD.json NEW.json

Runs the benchmark workloads (throughput, latency, dag-size, api, idle) through
the real server against PostgreSQL with durability on: a private cluster it
boots itself, or TASKER_DATABASE_URL's server (a fresh database per workload
is created there, so the user needs CREATEDB).

--workload retention (never run by default; minutes, several GB of disk)
fills a database with 1,000,000 finished tasks past their retention and
100,000 within it, then times the leader's retention shrinking it to the
retained set while 50 tasks/s run, with their ready→start latency.

--workload load (never run by default; --duration, 60s by default) sends
200 requests/s of mixed API traffic (create, list, show, and a remote
worker's claim and complete) to one replica on loopback, and reports p50
and p99 per route. Its gates: no failed request, the replica's goroutines
back to their count before (±10) and its heap after GC within 20 %.

A figure marked "(gate)" that is missed makes the command exit 1, after
the table.
`

func runBench(ctx context.Context, args []string, env config.LookupEnv, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "compare" {
		if len(args) != 3 {
			fmt.Fprint(stderr, "taskerd bench compare: want OLD.json NEW.json\n")
			return exitUsage
		}
		old, err := bench.ReadReport(args[1])
		if err != nil {
			fmt.Fprintf(stderr, "taskerd bench compare: %v\n", err)
			return exitError
		}
		cur, err := bench.ReadReport(args[2])
		if err != nil {
			fmt.Fprintf(stderr, "taskerd bench compare: %v\n", err)
			return exitError
		}
		bench.Compare(stdout, old, cur)
		return exitOK
	}
	fs := flag.NewFlagSet("taskerd bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	workload := fs.String("workload", "", "run one workload")
	quick := fs.Bool("quick", false, "run each workload tiny (a smoke test)")
	duration := fs.Duration("duration", bench.DefaultLoadDuration, "how long the load workload sends traffic")
	jsonPath := fs.String("json", "", "also write the figures to this JSON file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (its sampling slows taskerd: the report says so, and make bench takes it in a run of its own)")
	verbose := fs.Bool("v", false, "log progress, and the top SQL statements of each workload, to stderr")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, benchUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(stderr, "taskerd bench: %v\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "taskerd bench: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	var logger *slog.Logger
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	} else {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "taskerd bench: %v\n", err)
			return exitError
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "taskerd bench: %v\n", err)
			return exitError
		}
		defer pprof.StopCPUProfile()
	}
	admin, _ := env("TASKER_DATABASE_URL")
	cfg := bench.Config{AdminURL: admin, Workload: *workload, Quick: *quick, Duration: *duration, Logger: logger}
	if *verbose {
		cfg.Statements = stderr
	}
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		rep.CPUProfiled = *cpuprofile != ""
		rep.Print(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "taskerd bench: %v\n", err)
		return exitError
	}
	if *jsonPath != "" {
		if err := rep.WriteJSON(*jsonPath); err != nil {
			fmt.Fprintf(stderr, "taskerd bench: %v\n", err)
			return exitError
		}
	}
	if missed := rep.Missed(); len(missed) > 0 {
		for _, f := range missed {
			fmt.Fprintf(stderr, "taskerd bench: gate missed: %s %s = %s, want %s\n", f.Workload, f.Metric, strconv.FormatFloat(f.Value, 'f', -1, 64), f.Target)
		}
		return exitError
	}
	return exitOK
}
