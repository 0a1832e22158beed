package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// templatesListSettings are the settings of `taskerd templates list`;
// validate needs none.
var templatesListSettings = []string{"database-url", "db-schema"}

func runTemplates(ctx context.Context, args []string, env config.LookupEnv, stdout, stderr io.Writer) int {
	const usageText = `Usage:
  taskerd templates validate FILE|DIR…   check template files as the server would (no database needed)
  taskerd templates list [flags]          list the registered templates
`
	if len(args) == 0 {
		fmt.Fprint(stderr, "taskerd templates: want an action: validate or list\n\n"+usageText)
		return exitUsage
	}
	switch args[0] {
	case "validate":
		return runTemplatesValidate(args[1:], env, stdout, stderr)
	case "list":
		return runTemplatesList(ctx, args[1:], env, stdout, stderr)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "taskerd templates: unknown action %q: want validate or list\n", args[0])
		return exitUsage
	}
}

// runTemplatesValidate parses every file (folders are walked like
// TASKER_TEMPLATES_DIR) with the built-in kinds and prints each error with
// its JSON pointer; it exits 1 when any file is invalid, for users' CI.
func runTemplatesValidate(args []string, env config.LookupEnv, stdout, stderr io.Writer) int {
	_, paths, code := parseSettings("templates validate", "templates validate FILE|DIR…", nil, args, env, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "taskerd templates validate: name at least one file or folder")
		return exitUsage
	}
	httpKind, err := handler.NewHTTP(handler.HTTPConfig{})
	if err != nil {
		fmt.Fprintf(stderr, "taskerd templates validate: %v\n", err)
		return exitError
	}
	kinds, err := handler.NewKinds(append(handler.Builtins(), httpKind, handler.NewSubtask())...)
	if err != nil {
		fmt.Fprintf(stderr, "taskerd templates validate: %v\n", err)
		return exitError
	}
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", p, err)
			return exitError
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		found, err := registry.TemplateFiles(p)
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", p, err)
			return exitError
		}
		files = append(files, found...)
	}
	invalid := 0
	seen := map[string]struct{ file, hash string }{} // full name → first file
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", f, err)
			invalid++
			continue
		}
		def, err := registry.Parse(data, registry.FormatForFile(f), registry.ParseConfig{Kinds: kinds})
		var ve *registry.ValidationError
		switch {
		case errors.As(err, &ve):
			invalid++
			for _, fe := range ve.Errors {
				if fe.Pointer == "" {
					fmt.Fprintf(stdout, "%s: %s\n", f, fe.Message)
				} else {
					fmt.Fprintf(stdout, "%s: %s: %s\n", f, fe.Pointer, fe.Message)
				}
			}
			continue
		case err != nil:
			fmt.Fprintf(stdout, "%s: %v\n", f, err)
			invalid++
			continue
		}
		full := def.Template.FullName()
		if first, dup := seen[full]; dup && first.hash != def.ContentHash {
			fmt.Fprintf(stdout, "%s: %s is also defined, differently, in %s; a server would register only one of them\n", f, full, first.file)
			invalid++
			continue
		}
		seen[full] = struct{ file, hash string }{f, def.ContentHash}
		fmt.Fprintf(stdout, "%s: ok (%s, %d steps)\n", f, full, len(def.Template.StepTemplates))
	}
	if invalid > 0 {
		fmt.Fprintf(stdout, "%d of %d template files invalid\n", invalid, len(files))
		return exitError
	}
	fmt.Fprintf(stdout, "%d template files valid\n", len(files))
	return exitOK
}

// runTemplatesList prints the live template versions from the database.
func runTemplatesList(ctx context.Context, args []string, env config.LookupEnv, stdout, stderr io.Writer) int {
	cfg, rest, code := parseSettings("templates list", "templates list [flags]", templatesListSettings, args, env, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "taskerd templates list: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	if cfg.DatabaseURL == "" {
		fmt.Fprintln(stderr, "taskerd templates list: setting TASKER_DATABASE_URL (--database-url) is required")
		return exitUsage
	}
	st, err := store.New(store.Config{DatabaseURL: cfg.DatabaseURL, Schema: cfg.DBSchema, MaxConns: 2})
	if err != nil {
		fmt.Fprintf(stderr, "taskerd templates list: %v\n", err)
		return exitError
	}
	defer st.Close()
	list, err := st.LiveTemplates(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "taskerd templates list: %v\n", err)
		return exitError
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tVERSION\tSTEPS\tHASH\tREGISTERED\tDESCRIPTION")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.12s\t%s\t%s\n", t.Namespace, t.Name, t.Version, t.StepCount, t.ContentHash,
			t.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"), t.Description)
	}
	if err := tw.Flush(); err != nil {
		return exitError
	}
	return exitOK
}
