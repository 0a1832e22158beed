// Command taskerd-probe is the container image's HEALTHCHECK: it GETs
// taskerd's readiness route on the local listener and exits 0 on 200, 1
// otherwise. The distroless image has no shell or curl; this is the few
// lines of Go that stand in for them.
//
//	taskerd-probe          GET /tasker/health/ready
//	taskerd-probe live     GET /tasker/health/live
//
// It reads TASKER_HTTP_ADDR (default :8080) like taskerd does, so the
// probe follows the server to another port.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Paths of the probes taskerd serves; deploy's test checks the manifests use them.
const (
	livePath  = "/tasker/health/live"
	readyPath = "/tasker/health/ready"
)

func main() {
	path := readyPath
	if len(os.Args) > 1 && os.Args[1] == "live" {
		path = livePath
	}
	if err := probe(os.Getenv("TASKER_HTTP_ADDR"), path); err != nil {
		fmt.Fprintf(os.Stderr, "taskerd-probe: %v\n", err)
		os.Exit(1)
	}
}

// probe GETs path on the server listening on addr (":8080" when empty).
func probe(addr, path string) error {
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("TASKER_HTTP_ADDR %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
