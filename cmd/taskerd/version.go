package main

import (
	"fmt"
	"io"

	"github.com/taskerd/taskerd/internal/version"
)

func runVersion(stdout io.Writer) int {
	v := version.Get()
	fmt.Fprintf(stdout, "taskerd %s (commit %s, %s)\n", v.Version, v.Commit, v.GoVersion)
	return exitOK
}
