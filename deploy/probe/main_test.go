package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != readyPath {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := ":" + srv.URL[strings.LastIndex(srv.URL, ":")+1:] // as TASKER_HTTP_ADDR is written
	if err := probe(addr, readyPath); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if err := probe(addr, livePath); err == nil {
		t.Error("a 503 should fail the probe")
	}
	if err := probe("nonsense", readyPath); err == nil {
		t.Error("a bad address should fail the probe")
	}
}
