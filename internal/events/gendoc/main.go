// Command gendoc writes docs/events.md from the event catalog; run it with
// `make events-doc` from the repository's root.
package main

import (
	"fmt"
	"os"

	"github.com/taskerd/taskerd/internal/events"
)

func main() {
	path := "docs/events.md"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	if err := os.WriteFile(path, events.Markdown(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}
