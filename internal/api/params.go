package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Paging limits shared by every list: Tasker's default page of 20, and
// anything above 100 is served as 100 rather than refused.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// queryParams reads a request's query parameters, collecting one
// FieldError per bad parameter so that the client learns about all of them
// at once. Each reader returns the zero value for a bad or absent parameter;
// Problem says whether any was bad.
type queryParams struct {
	values url.Values
	errs   []FieldError
}

func newQueryParams(r *http.Request) *queryParams {
	return &queryParams{values: r.URL.Query()}
}

func (q *queryParams) fail(name, format string, args ...any) {
	q.errs = append(q.errs, FieldError{Parameter: name, Detail: fmt.Sprintf(format, args...)})
}

// Problem is a 400 listing every bad parameter, or nil.
func (q *queryParams) Problem() *Problem {
	if len(q.errs) == 0 {
		return nil
	}
	names := make([]string, 0, len(q.errs))
	for _, e := range q.errs {
		names = append(names, e.Parameter)
	}
	detail := fmt.Sprintf("invalid query parameter %s: %s", names[0], q.errs[0].Detail)
	if len(q.errs) > 1 {
		detail = fmt.Sprintf("invalid query parameters %s; see errors", strings.Join(names, ", "))
	}
	return BadRequest(detail, q.errs...)
}

// String returns the parameter's value ("" when absent). A parameter given
// twice is refused, since only one value can be meant.
func (q *queryParams) String(name string) string {
	vs := q.values[name]
	if len(vs) > 1 {
		q.fail(name, "given %d times; give it once", len(vs))
		return ""
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// List returns a parameter given as a comma-separated list, repeated, or
// both; empty items are dropped.
func (q *queryParams) List(name string) []string {
	var out []string
	for _, v := range q.values[name] {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}

// Enum returns the parameter when it is one of allowed, def when absent.
func (q *queryParams) Enum(name, def string, allowed ...string) string {
	v := q.String(name)
	if v == "" {
		return def
	}
	if !slices.Contains(allowed, v) {
		q.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
		return def
	}
	return v
}

// EnumList returns a list parameter whose every item is one of allowed.
func (q *queryParams) EnumList(name string, allowed ...string) []string {
	items := q.List(name)
	for _, v := range items {
		if !slices.Contains(allowed, v) {
			q.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
			return nil
		}
	}
	return items
}

// Int returns an integer parameter within [lo, hi], def when absent.
func (q *queryParams) Int(name string, def, lo, hi int) int {
	v := q.String(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		q.fail(name, "%q is not an integer from %d to %d", v, lo, hi)
		return def
	}
	return n
}

// Limit reads Tasker's limit: default DefaultPageLimit, at least 1, and a
// value above MaxPageLimit is clamped to it rather than refused.
func (q *queryParams) Limit() int {
	v := q.String("limit")
	if v == "" {
		return DefaultPageLimit
	}
	n, err := strconv.Atoi(v)
	if err != nil && strings.TrimLeft(v, "0123456789") == "" && v != "" {
		return MaxPageLimit // a run of digits too long for an int is still "more than 100"
	}
	if err != nil || n < 1 {
		q.fail("limit", "%q is not a positive integer (at most %d are returned)", v, MaxPageLimit)
		return DefaultPageLimit
	}
	return min(n, MaxPageLimit)
}

// Time returns an RFC 3339 timestamp parameter; the zero time when absent.
func (q *queryParams) Time(name string) time.Time {
	v := q.String(name)
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		q.fail(name, "%q is not an RFC 3339 timestamp such as 2025-01-31T08:00:00Z", v)
		return time.Time{}
	}
	return t
}

// Bool returns a true/false parameter, false when absent.
func (q *queryParams) Bool(name string) bool {
	v := q.String(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		q.fail(name, "%q is not true or false", v)
	}
	return b
}

// Unknown refuses parameters the route does not take, so a misspelt filter
// ("namspace=") is reported instead of silently matching everything.
func (q *queryParams) Unknown(known ...string) {
	var bad []string
	for name := range q.values {
		if !slices.Contains(known, name) {
			bad = append(bad, name)
		}
	}
	slices.Sort(bad)
	for _, name := range bad {
		q.fail(name, "unknown parameter; this route takes %s", strings.Join(known, ", "))
	}
}
