// Package version reports which taskerd this is. Version and Commit are set
// at build time:
//
//	go build -ldflags "-X github.com/taskerd/taskerd/internal/version.Version=v1.2.3 -X github.com/taskerd/taskerd/internal/version.Commit=abc123"
package version

import (
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X.
var (
	Version = "dev"
	Commit  = ""
)

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Get returns the build's version, falling back to the VCS stamp Go records
// when -ldflags did not set a commit.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if info.Commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					info.Commit = s.Value
				}
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}
