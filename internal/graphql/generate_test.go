package graphql_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The generated executor was made from the schema as it is now: gqlgen
// copies the schema's text into gen/generated.go, so an edit of
// schema.graphqls without `make graphql` shows here, at no cost.
func TestGeneratedSchemaIsCurrent(t *testing.T) {
	t.Parallel()
	schema, err := os.ReadFile("schema.graphqls")
	if err != nil {
		t.Fatal(err)
	}
	gen, err := os.ReadFile(filepath.Join("gen", "generated.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(gen, schema) {
		t.Error("internal/graphql/gen is stale: schema.graphqls changed; run `make graphql` and commit the result")
	}
}

// The checked-in generated code is what `make graphql` generates now.
// gqlgen writes beside its configuration, so it runs on a copy of the
// module and the test compares. It type-checks the whole module (over a
// minute on two busy cores), so it runs with TASKER_GQLGEN_CHECK=1
// (`make graphql-check`); TestGeneratedSchemaIsCurrent catches the usual
// staleness, a schema edited without regenerating, in every run.
func TestGeneratedCodeIsNotStale(t *testing.T) {
	t.Parallel()
	if os.Getenv("TASKER_GQLGEN_CHECK") != "1" {
		t.Skip("set TASKER_GQLGEN_CHECK=1 (make graphql-check) to regenerate and compare")
	}
	for _, tool := range []string{"make", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed; the staleness check copies the module and runs `make graphql`", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	files, err := exec.CommandContext(ctx, "git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	copyRoot := t.TempDir()
	for _, name := range strings.Split(strings.TrimSpace(string(files)), "\n") {
		// Go sources, the module files, embedded files and gqlgen's inputs:
		// what loading the module's packages reads.
		if strings.HasPrefix(name, ".") || strings.Contains(name, "/.") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, name))
		if os.IsNotExist(err) {
			continue // deleted in the work tree, not yet in the index
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(copyRoot, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", root, "graphql", "GRAPHQL_ROOT="+copyRoot)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make graphql: %v\n%s", err, msg)
	}
	for _, name := range []string{"gen/generated.go", "model/models_gen.go", "schema.resolvers.go", "../../go.mod"} {
		want, err := os.ReadFile(filepath.Join(copyRoot, "internal", "graphql", name))
		if err != nil {
			t.Fatal(err)
		}
		have, err := os.ReadFile(filepath.Join(root, "internal", "graphql", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(have, want) {
			t.Errorf("internal/graphql/%s is stale: run `make graphql` and commit the result", name)
		}
	}
}
