package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
)

// choosePort returns the configured port, else the port recorded by the
// previous run when it is still free (so URLs in a developer's shell history
// and .env files keep working), else a fresh free one. exclude lists ports
// that just failed to bind.
func (c *Cluster) choosePort(ctx context.Context, exclude map[int]bool) (int, error) {
	if c.cfg.Port != 0 {
		return c.cfg.Port, nil
	}
	if recorded, ok := c.recordedPort(ctx); ok && !exclude[recorded] && portFree(recorded) {
		return recorded, nil
	}
	for range 10 {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		if !exclude[port] {
			return port, nil
		}
	}
	return 0, errors.New("find a free TCP port on 127.0.0.1: the kernel kept handing out ports that failed to bind")
}

// recordedPort reads Dir/port; a missing or garbled file means none.
func (c *Cluster) recordedPort(ctx context.Context) (int, bool) {
	b, err := os.ReadFile(c.portFile)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.logger.WarnContext(ctx, "ignoring unreadable port file", slog.String(logKeyPath, c.portFile), slog.Any(logKeyError, err))
		}
		return 0, false
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || port <= 0 || port > 65535 {
		c.logger.WarnContext(ctx, "ignoring garbled port file", slog.String(logKeyPath, c.portFile))
		return 0, false
	}
	return port, true
}

// recordPort writes the port for the next run. Written through a temporary
// file so a crash never leaves a half-written number behind.
func (c *Cluster) recordPort(port int) error {
	tmp := c.portFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		return fmt.Errorf("record port: %w", err)
	}
	if err := os.Rename(tmp, c.portFile); err != nil {
		return fmt.Errorf("record port: %w", err)
	}
	return nil
}

// portFree reports whether 127.0.0.1:port can be bound right now. Another
// process may still take it before postgres binds; Start retries for that.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close() // nothing was accepted; a close error changes nothing
	return true
}

// freePort asks the kernel for an unused port on the loopback interface.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free TCP port on %s: %w", loopback, err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close() // nothing was accepted; a close error changes nothing
	return port, nil
}
