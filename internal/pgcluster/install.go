package pgcluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// canInstall reports whether installMissing could work here: only root may
// run apt-get, and only Debian-like systems have it.
func canInstall() bool {
	if os.Geteuid() != 0 {
		return false
	}
	_, err := exec.LookPath("apt-get")
	return err == nil
}

// installPostgres installs the distribution's PostgreSQL with apt-get.
// DEBIAN_FRONTEND=noninteractive keeps debconf from waiting on a terminal
// nobody is watching.
func (c *Cluster) installPostgres(ctx context.Context) error {
	c.logger.InfoContext(ctx, "PostgreSQL binaries missing, installing them with apt-get")
	for _, args := range [][]string{
		{"update"},
		{"install", "-y", "postgresql"},
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, lastLines(out.Bytes(), logTailLines))
		}
	}
	return nil
}
