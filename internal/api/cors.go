package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// corsMaxAge is how long a browser may reuse a preflight answer (10 min).
const corsMaxAge = 600

// corsAllowedHeaders are the request headers a cross-origin page may send.
var corsAllowedHeaders = []string{
	"Accept", "Authorization", "Content-Type", "Idempotency-Key", HeaderRequestID, CorrelationHeader, "traceparent",
}

// corsExposedHeaders are the response headers a cross-origin page may read.
var corsExposedHeaders = []string{HeaderRequestID, CorrelationHeader, "Link", "Location", "Allow", "Retry-After"}

// corsMethods are the methods the API answers.
var corsMethods = []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete}

// ParseCORSOrigins checks a list of allowed origins: "*" alone, or origins
// such as https://ops.example.com (scheme, host and optional port, nothing
// else).
func ParseCORSOrigins(list []string) ([]string, error) {
	var out []string
	for _, o := range list {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			if len(list) > 1 {
				return nil, fmt.Errorf(`"*" allows every origin and cannot be combined with others`)
			}
			return []string{"*"}, nil
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("%q is not an origin such as https://ops.example.com", o)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}

// CORS lets the pages of the given origins call the API from a browser;
// with no origins it does nothing, which is the default: browsers then keep
// other sites' scripts away from the API. "*" allows every origin. A
// preflight (OPTIONS with Access-Control-Request-Method) from an allowed
// origin is answered 204 here, before routing; one from another origin gets
// a 403 problem. Credentials (cookies) are never allowed: the API takes
// none.
func CORS(origins []string) func(http.Handler) http.Handler {
	allowAll := slices.Contains(origins, "*")
	allowed := func(origin string) bool {
		return allowAll || slices.Contains(origins, strings.ToLower(origin))
	}
	return func(next http.Handler) http.Handler {
		if len(origins) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" {
				next.ServeHTTP(w, r)
				return
			}
			h := w.Header()
			h.Add("Vary", "Origin")
			preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
			if !allowed(origin) {
				if preflight {
					WriteProblem(w, r, newProblem(http.StatusForbidden, "cors-origin-not-allowed", "Forbidden",
						fmt.Sprintf("origin %q may not call this API from a browser; see TASKER_CORS_ORIGINS", origin), nil))
					return
				}
				next.ServeHTTP(w, r) // the browser withholds the answer from the page
				return
			}
			allowOrigin := origin
			if allowAll {
				allowOrigin = "*"
			}
			h.Set("Access-Control-Allow-Origin", allowOrigin)
			if !preflight {
				h.Set("Access-Control-Expose-Headers", strings.Join(corsExposedHeaders, ", "))
				next.ServeHTTP(w, r)
				return
			}
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", strings.Join(corsMethods, ", "))
			h.Set("Access-Control-Allow-Headers", strings.Join(corsAllowedHeaders, ", "))
			h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
			w.WriteHeader(http.StatusNoContent)
		})
	}
}
