package api

import (
	"compress/gzip"
	"mime"
	"net/http"
	"strings"
	"sync"
)

// DefaultGzipMinBytes is the smallest response Gzip compresses. A response
// of a few kilobytes leaves in the first round trip of the connection's
// congestion window (ten segments, about 14 KB) compressed or not, so
// compressing it saves bytes but no time, and costs CPU: compressing the
// ~1.5 KB answer of a task create was 10 % of the server's CPU in the api
// benchmark. Lists, task views with many steps and the UI's assets are
// larger and still compressed.
const DefaultGzipMinBytes = 4096

// gzipTypes are the media types worth compressing: text, in short. Images
// and archives are compressed already, and event streams must reach the
// client as they are written, not when a buffer fills.
var gzipTypes = map[string]bool{
	ContentTypeJSON:          true,
	ContentTypeProblem:       true,
	"text/plain":             true,
	"text/html":              true,
	"text/css":               true,
	"application/javascript": true,
	"text/javascript":        true,
	"application/yaml":       true,
	"image/svg+xml":          true,
}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// Gzip compresses responses of at least minBytes whose type is text-like
// when the client accepts gzip. The first minBytes of a response are held
// back to decide; a response that is flushed before then (a stream) is sent
// as is. Responses with a Content-Encoding already, partial content and
// bodiless statuses pass through untouched. Install it inside Recoverer:
// a handler that panics before its body is decided leaves nothing written,
// so Recoverer can still answer 500.
func Gzip(minBytes int) func(http.Handler) http.Handler {
	if minBytes <= 0 {
		minBytes = DefaultGzipMinBytes
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !acceptsGzip(r) || r.Method == http.MethodHead {
				next.ServeHTTP(w, r)
				return
			}
			gw := &gzipResponseWriter{ResponseWriter: w, min: minBytes}
			next.ServeHTTP(gw, r)
			gw.finish()
		})
	}
}

// acceptsGzip reads Accept-Encoding, honouring gzip;q=0 as a refusal.
func acceptsGzip(r *http.Request) bool {
	for _, field := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(field, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// gzipResponseWriter decides, at the first minBytes or at the end, whether
// to compress.
type gzipResponseWriter struct {
	http.ResponseWriter
	min    int
	status int
	buf    []byte
	// decided is set once headers went out; gz is non-nil when compressing.
	decided bool
	gz      *gzip.Writer
}

func (g *gzipResponseWriter) WriteHeader(code int) {
	if g.decided {
		g.ResponseWriter.WriteHeader(code)
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		g.ResponseWriter.WriteHeader(code) // interim responses go out at once
		return
	}
	if g.status == 0 {
		g.status = code
	}
}

func (g *gzipResponseWriter) Write(b []byte) (int, error) {
	if g.status == 0 {
		g.status = http.StatusOK
	}
	if !g.decided {
		if !g.compressible() {
			g.passThrough()
		} else {
			g.buf = append(g.buf, b...)
			if len(g.buf) < g.min {
				return len(b), nil
			}
			g.startGzip()
			return len(b), nil
		}
	}
	if g.gz != nil {
		return g.gz.Write(b)
	}
	return g.ResponseWriter.Write(b)
}

// compressible decides from the status and the headers the handler set.
// Successes with a body and error documents qualify; redirects, 204, 206
// (a byte range of the uncompressed body) and 304 do not.
func (g *gzipResponseWriter) compressible() bool {
	switch {
	case g.status == http.StatusNoContent, g.status == http.StatusPartialContent:
		return false
	case g.status < 200, g.status >= 300 && g.status < 400:
		return false
	}
	h := g.Header()
	if h.Get("Content-Encoding") != "" || h.Get("Content-Range") != "" {
		return false
	}
	return g.compressibleType()
}

// passThrough sends the status and whatever was held back, uncompressed.
func (g *gzipResponseWriter) passThrough() {
	g.decided = true
	if g.compressibleType() {
		g.Header().Add("Vary", "Accept-Encoding")
	}
	g.ResponseWriter.WriteHeader(g.status)
	if len(g.buf) > 0 {
		_, _ = g.ResponseWriter.Write(g.buf)
		g.buf = nil
	}
}

func (g *gzipResponseWriter) compressibleType() bool {
	mt, _, err := mime.ParseMediaType(g.Header().Get("Content-Type"))
	return err == nil && gzipTypes[mt]
}

func (g *gzipResponseWriter) startGzip() {
	g.decided = true
	h := g.Header()
	h.Set("Content-Encoding", "gzip")
	h.Add("Vary", "Accept-Encoding")
	h.Del("Content-Length") // it counted the uncompressed bytes
	if etag := h.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		h.Set("ETag", "W/"+etag) // the bytes differ, so a strong validator would lie
	}
	g.ResponseWriter.WriteHeader(g.status)
	g.gz = gzipWriters.Get().(*gzip.Writer)
	g.gz.Reset(g.ResponseWriter)
	_, _ = g.gz.Write(g.buf)
	g.buf = nil
}

// finish ends the response once the handler returned: small responses go
// out as they are, compressed ones get their gzip trailer.
func (g *gzipResponseWriter) finish() {
	if !g.decided {
		if g.status == 0 && len(g.buf) == 0 {
			return // the handler wrote nothing; net/http sends its implicit 200
		}
		if g.status == 0 {
			g.status = http.StatusOK
		}
		g.passThrough()
		return
	}
	if g.gz != nil {
		_ = g.gz.Close()
		g.gz.Reset(nil)
		gzipWriters.Put(g.gz)
		g.gz = nil
	}
}

// Flush sends what was written so far. A response flushed before it was
// decided is a stream: it goes out uncompressed.
func (g *gzipResponseWriter) Flush() {
	if !g.decided {
		if g.status == 0 {
			g.status = http.StatusOK
		}
		g.passThrough()
	}
	if g.gz != nil {
		_ = g.gz.Flush()
	}
	_ = http.NewResponseController(g.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer for
// deadlines; Flush is handled above so it is never bypassed.
func (g *gzipResponseWriter) Unwrap() http.ResponseWriter {
	return g.ResponseWriter
}
