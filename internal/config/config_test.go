package config_test

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/config"
)

func env(m map[string]string) config.LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func parse(t *testing.T, names []string, args []string, vars map[string]string) (*config.Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return config.NewParser(fs, names).Parse(args, env(vars))
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	cfg, err := parse(t, config.Server, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8080" || cfg.DBSchema != "tasker" || cfg.ShutdownTimeout != 30*time.Second ||
		cfg.MaxBodyBytes != 1<<20 || cfg.LogFormat != "json" || cfg.DBMaxConns != 20 || cfg.Migrate {
		t.Errorf("defaults: %+v", cfg)
	}

	cfg, err = parse(t, config.Server, nil, map[string]string{"TASKER_HTTP_ADDR": ":9000", "TASKER_MIGRATE": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":9000" || !cfg.Migrate {
		t.Errorf("env over default: addr %q migrate %v", cfg.HTTPAddr, cfg.Migrate)
	}

	cfg, err = parse(t, config.Server, []string{"--http-addr", "127.0.0.1:7000", "--migrate=false"},
		map[string]string{"TASKER_HTTP_ADDR": ":9000", "TASKER_MIGRATE": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:7000" || cfg.Migrate {
		t.Errorf("flag over env: addr %q migrate %v", cfg.HTTPAddr, cfg.Migrate)
	}

	// A boolean flag alone means true.
	cfg, err = parse(t, config.Server, []string{"--migrate"}, nil)
	if err != nil || !cfg.Migrate {
		t.Errorf("--migrate alone: %v, %v", cfg, err)
	}
}

func TestBadSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env, value, want string
	}{
		{"TASKER_HTTP_ADDR", "8080", "host:port"},
		{"TASKER_LOG_LEVEL", "loud", "TASKER_LOG_LEVEL"},
		{"TASKER_LOG_FORMAT", "xml", "json, text"},
		{"TASKER_SHUTDOWN_TIMEOUT", "soon", "duration"},
		{"TASKER_SHUTDOWN_TIMEOUT", "0s", "above zero"},
		{"TASKER_DB_SCHEMA", "Bad-Schema", "[a-z_]"},
		{"TASKER_DB_MAX_CONNS", "1", "from 2"},
		{"TASKER_MAX_BODY_BYTES", "lots", "whole number"},
		{"TASKER_MIGRATE", "maybe", "true or false"},
		{"TASKER_HTTP_DENY_CIDRS", "10.0.0.0/33", "neither a CIDR"},
	} {
		_, err := parse(t, config.Server, nil, map[string]string{tc.env: tc.value})
		var cerr *config.Error
		if !errors.As(err, &cerr) {
			t.Errorf("%s=%q: err = %v, want *config.Error", tc.env, tc.value, err)
			continue
		}
		msg := err.Error()
		if cerr.Env != tc.env || !strings.Contains(msg, tc.env) || !strings.Contains(msg, "--"+cerr.Flag) || !strings.Contains(msg, tc.want) {
			t.Errorf("%s=%q: message %q should name the variable, the flag and say %q", tc.env, tc.value, msg, tc.want)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("%s: message spans lines: %q", tc.env, msg)
		}
	}
}

func TestUnknownFlag(t *testing.T) {
	t.Parallel()
	if _, err := parse(t, config.Server, []string{"--no-such"}, nil); err == nil {
		t.Fatal("want an error for an unknown flag")
	}
}

// Every setting a command declares is listed by --help with its variable and default.
func TestPrintSettings(t *testing.T) {
	t.Parallel()
	for name, names := range map[string][]string{"serve": config.Server, "dev": config.Dev, "migrate": config.Migrate} {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		p := config.NewParser(fs, names)
		var buf bytes.Buffer
		p.PrintSettings(&buf)
		for _, s := range config.Settings {
			declared := false
			for _, n := range names {
				declared = declared || n == s.Flag
			}
			line := ""
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.Contains(l, "--"+s.Flag+" ") {
					line = l
				}
			}
			if declared != (line != "") {
				t.Errorf("%s: --%s listed=%v, declared=%v", name, s.Flag, line != "", declared)
				continue
			}
			if declared && (!strings.Contains(line, s.Env) || (s.Default != "" && !strings.Contains(line, s.Default))) {
				t.Errorf("%s: line for --%s lacks its variable or default: %q", name, s.Flag, line)
			}
		}
	}
	for _, n := range config.Dev {
		if n == "database-url" {
			t.Error("dev makes its own database; it must not take --database-url")
		}
	}
}
