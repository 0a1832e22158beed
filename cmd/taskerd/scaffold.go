package main

import (
	"bytes"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/Masterminds/semver/v3"

	"github.com/taskerd/taskerd/internal/version"
)

// scaffoldFiles are the templates of `taskerd scaffold`. They use [[ ]]
// as delimiters: the files they produce hold taskerd's own {{ }}
// templates (http steps) and Go/Python code with braces.
//
//go:embed scaffold
var scaffoldFiles embed.FS

// scaffoldKinds are the workflow shapes scaffold knows, each a template
// scaffold/template_KIND.yaml and handlers in scaffold/go and scaffold/python.
var scaffoldKinds = []string{"api", "calculation", "database", "notification"}

// scaffoldName is what the template format accepts for namespaces and names.
var scaffoldName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// scaffoldData fills the templates.
type scaffoldData struct {
	Kind, Namespace, Name, Worker string
	// QueuePrefix starts every remote step's queue: remote:NS.NAME.STEP.
	QueuePrefix string
	// TaskerdVersion is the module version the Go worker's go.mod requires;
	// Dev marks a binary that is not a release, whose go.mod needs a replace.
	TaskerdVersion string
	Dev            bool
}

// scaffoldFile is one file to write: the template, and where it goes
// below --dir.
type scaffoldFile struct{ tmpl, dest string }

func runScaffold(args []string, stdout, stderr io.Writer) int {
	const usageText = `Usage: taskerd scaffold --kind api|calculation|database|notification --namespace NS --name NAME [--worker go|python] [--dir DIR] [--force]

Writes a task template (DIR/templates/NAME.yaml), a remote worker serving its
remote steps (DIR/worker/) with a test, and a README saying how to run them.
`
	fs := flag.NewFlagSet("taskerd scaffold", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kind := fs.String("kind", "", "workflow shape: "+strings.Join(scaffoldKinds, ", "))
	namespace := fs.String("namespace", "", "the template's namespace ([a-z][a-z0-9_]*)")
	name := fs.String("name", "", "the template's name ([a-z][a-z0-9_]*)")
	worker := fs.String("worker", "go", "language of the remote worker: go or python")
	dir := fs.String("dir", ".", "folder to write into")
	force := fs.Bool("force", false, "overwrite files that exist")
	fs.Usage = func() {
		fmt.Fprint(stdout, usageText+"\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return exitOK
		}
		fmt.Fprintf(stderr, "taskerd scaffold: %v\n\n%s", err, usageText)
		return exitUsage
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if !slices.Contains(scaffoldKinds, *kind) {
		problems = append(problems, fmt.Sprintf("--kind %q: want one of %s", *kind, strings.Join(scaffoldKinds, ", ")))
	}
	for flagName, v := range map[string]string{"namespace": *namespace, "name": *name} {
		if !scaffoldName.MatchString(v) {
			problems = append(problems, fmt.Sprintf("--%s %q: want lower-case letters, digits and _, starting with a letter", flagName, v))
		}
	}
	if *worker != "go" && *worker != "python" {
		problems = append(problems, fmt.Sprintf("--worker %q: want go or python", *worker))
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		fmt.Fprintf(stderr, "taskerd scaffold: %s\n\n%s", strings.Join(problems, "; "), usageText)
		return exitUsage
	}

	data := scaffoldData{Kind: *kind, Namespace: *namespace, Name: *name, Worker: *worker,
		QueuePrefix: "remote:" + *namespace + "." + *name + "."}
	data.TaskerdVersion, data.Dev = moduleVersion(version.Get().Version)
	files := []scaffoldFile{
		{"template_" + *kind + ".yaml", "templates/" + *name + ".yaml"},
		{"README.md", "README.md"},
	}
	if *worker == "go" {
		files = append(files,
			scaffoldFile{"go/main.go", "worker/main.go"},
			scaffoldFile{"go/handlers_" + *kind + ".go", "worker/handlers.go"},
			scaffoldFile{"go/handlers_" + *kind + "_test.go", "worker/handlers_test.go"},
			scaffoldFile{"go/template_test.go", "worker/template_test.go"})
		if !insideGoModule(*dir) {
			files = append(files, scaffoldFile{"go/go.mod", "worker/go.mod"})
		}
	} else {
		files = append(files,
			scaffoldFile{"python/worker.py", "worker/worker.py"},
			scaffoldFile{"python/handlers_" + *kind + ".py", "worker/handlers.py"},
			scaffoldFile{"python/test_handlers_" + *kind + ".py", "worker/test_handlers.py"})
	}

	rendered := make([][]byte, len(files))
	for i, f := range files {
		out, err := renderScaffold(f.tmpl, data)
		if err != nil {
			fmt.Fprintf(stderr, "taskerd scaffold: %v\n", err)
			return exitError
		}
		rendered[i] = out
		dest := filepath.Join(*dir, filepath.FromSlash(f.dest))
		if _, err := os.Stat(dest); err == nil && !*force {
			fmt.Fprintf(stderr, "taskerd scaffold: %s exists; nothing written (--force overwrites)\n", dest)
			return exitError
		}
	}
	for i, f := range files {
		dest := filepath.Join(*dir, filepath.FromSlash(f.dest))
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			fmt.Fprintf(stderr, "taskerd scaffold: %v\n", err)
			return exitError
		}
		if err := os.WriteFile(dest, rendered[i], 0o644); err != nil {
			fmt.Fprintf(stderr, "taskerd scaffold: %v\n", err)
			return exitError
		}
		fmt.Fprintf(stdout, "wrote %s\n", dest)
	}
	fmt.Fprintf(stdout, "\nNext: taskerd templates validate %s, then see %s\n",
		filepath.Join(*dir, "templates"), filepath.Join(*dir, "README.md"))
	return exitOK
}

// renderScaffold executes one embedded template.
func renderScaffold(name string, data scaffoldData) ([]byte, error) {
	raw, err := fs.ReadFile(scaffoldFiles, path.Join("scaffold", name+".tmpl"))
	if err != nil {
		return nil, err
	}
	t, err := template.New(name).Delims("[[", "]]").Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// moduleVersion is the taskerd module version a generated go.mod
// requires: this binary's, when it is a release; otherwise v0.0.0 and
// dev, so the go.mod says to point it at a checkout.
func moduleVersion(v string) (string, bool) {
	sv, err := semver.StrictNewVersion(strings.TrimPrefix(v, "v"))
	if err != nil || sv.Prerelease() != "" || sv.Metadata() != "" {
		return "v0.0.0", true
	}
	return "v" + sv.String(), false
}

// insideGoModule reports whether dir (which may not exist yet) is in a Go
// module, whose go.mod then governs the worker.
func insideGoModule(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		if _, err := os.Stat(filepath.Join(abs, "go.mod")); err == nil {
			return true
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return false
		}
		abs = parent
	}
}
