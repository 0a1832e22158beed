package api_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/api"
)

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGzip(t *testing.T) {
	t.Parallel()
	big := strings.Repeat(`{"task":"checkout"},`, 400)
	handler := api.Gzip(api.DefaultGzipMinBytes)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			api.WriteJSON(w, 200, big)
		case "/small":
			api.WriteJSON(w, 200, "ok")
		case "/problem":
			api.WriteProblem(w, r, api.BadRequest(strings.Repeat("x", 5000)))
		case "/png":
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(bytes.Repeat([]byte{1}, 4096))
		case "/stream":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("first"))
			w.(http.Flusher).Flush()
			_, _ = w.Write(bytes.Repeat([]byte("x"), 4096))
		case "/encoded":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "br")
			_, _ = w.Write(bytes.Repeat([]byte("x"), 4096))
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/chunks":
			w.Header().Set("Content-Type", "application/json")
			for range 200 {
				_, _ = w.Write([]byte(`"0123456789012345678901234567890123456789",`))
			}
		}
	}))
	for _, tc := range []struct {
		path, accept string
		gzipped      bool
		status       int
	}{
		{"/big", "gzip, deflate, br", true, 200},
		{"/big", "br;q=1.0, gzip;q=0.8", true, 200},
		{"/big", "gzip;q=0", false, 200},
		{"/big", "", false, 200},
		{"/big", "identity", false, 200},
		{"/small", "gzip", false, 200},
		{"/problem", "gzip", true, 400},
		{"/png", "gzip", false, 200},
		{"/stream", "gzip", false, 200},
		{"/encoded", "gzip", false, 200},
		{"/nocontent", "gzip", false, 204},
		{"/chunks", "gzip", true, 200},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.accept != "" {
			req.Header.Set("Accept-Encoding", tc.accept)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		gz := rec.Header().Get("Content-Encoding") == "gzip"
		if gz != tc.gzipped || rec.Code != tc.status {
			t.Errorf("%s with %q: gzip %v status %d; want %v %d", tc.path, tc.accept, gz, rec.Code, tc.gzipped, tc.status)
			continue
		}
		body := rec.Body.Bytes()
		if gz {
			body = gunzip(t, body)
			if rec.Header().Get("Vary") != "Accept-Encoding" || rec.Header().Get("Content-Length") != "" {
				t.Errorf("%s: Vary %q, Content-Length %q", tc.path, rec.Header().Get("Vary"), rec.Header().Get("Content-Length"))
			}
		}
		switch tc.path {
		case "/big":
			if !strings.Contains(string(body), `checkout`) || len(body) < 4000 {
				t.Errorf("/big: %d bytes", len(body))
			}
		case "/stream":
			if !strings.HasPrefix(string(body), "first") || len(body) != 5+4096 {
				t.Errorf("/stream: %d bytes", len(body))
			}
		case "/chunks":
			if len(body) != 200*43 {
				t.Errorf("/chunks: %d bytes", len(body))
			}
		}
	}
}

// A handler that panics before its body is decided still gets Recoverer's
// 500 problem, not a half-written compressed body.
func TestGzipPanicStillAnswers500(t *testing.T) {
	t.Parallel()
	h := api.Recoverer(discardLogger())(api.Gzip(0)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"partial":`))
		panic("boom")
	})))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 500 || rec.Header().Get("Content-Type") != api.ContentTypeProblem || strings.Contains(rec.Body.String(), "partial") {
		t.Errorf("%d %s %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}

// Large API answers are compressed end to end.
func TestLargeResponsesAreGzipped(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	r := s.do(t, "GET", "/api-docs/doc.json", http.Header{"Accept-Encoding": {"gzip"}}, "")
	if r.code != 200 || r.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("doc.json: %d %v", r.code, r.header)
	}
	if plain := gunzip(t, r.body); !bytes.Contains(plain, []byte(`"basePath": "/tasker"`)) || len(r.body)*3 > len(plain) {
		t.Errorf("doc.json: %d compressed bytes for %d", len(r.body), len(plain))
	}
	r = s.do(t, "GET", "/health/live", http.Header{"Accept-Encoding": {"gzip"}}, "")
	if r.code != 200 || r.header.Get("Content-Encoding") != "" {
		t.Errorf("a small answer was compressed: %v", r.header)
	}
}
