package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// cursorVersion changes when a cursor's content changes meaning; older
// cursors are then refused with a clear 400 instead of misread.
const cursorVersion = 1

// maxCursorLen bounds what is decoded; real cursors are about 200 bytes.
const maxCursorLen = 1024

// cursor is the opaque position a keyset page resumes after. It is
// base64url-encoded JSON: opaque to clients, readable in a debugger. It is
// not signed: a forged cursor can only ask for rows the same request could
// ask for anyway, and every field is validated when decoded.
type cursor struct {
	V int `json:"v"`
	// List names the list it belongs to ("tasks", "transitions"), so a
	// cursor cannot be used on another route.
	List string `json:"l"`
	// Query fingerprints the sort and filters it was made for: the next
	// page must be asked with the same ones.
	Query string `json:"q"`
	// Key is the list's position, in the list's own shape.
	Key json.RawMessage `json:"k"`
}

// queryFingerprint identifies a list query by the parameters that shape its
// order and membership; paging parameters are not part of it.
func queryFingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func encodeCursor(list, query string, key any) string {
	k, err := json.Marshal(key)
	if err != nil {
		panic(fmt.Sprintf("api: cursor key of %s does not encode: %v", list, err)) // keys are plain structs
	}
	b, _ := json.Marshal(cursor{V: cursorVersion, List: list, Query: query, Key: k})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor of list made for query into key; every
// failure is a 400 that says what to do.
func decodeCursor(raw, list, query string, key any) *Problem {
	bad := func(why string) *Problem {
		return BadRequest("invalid query parameter cursor: "+why,
			FieldError{Parameter: "cursor", Detail: why})
	}
	if len(raw) > maxCursorLen {
		return bad("too long to be a cursor this server issued; pass next_cursor from the previous page unchanged")
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return bad("not a cursor this server issued (not base64url); pass next_cursor from the previous page unchanged")
	}
	var c cursor
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return bad("not a cursor this server issued; pass next_cursor from the previous page unchanged")
	}
	switch {
	case c.V == 0 || c.List == "" || c.Query == "" || len(c.Key) == 0:
		return bad("not a cursor this server issued; pass next_cursor from the previous page unchanged")
	case c.V != cursorVersion:
		return bad("issued by another version of taskerd; start again from the first page")
	case c.List != list:
		return bad(fmt.Sprintf("issued for the %s list, not this one", c.List))
	case c.Query != query:
		return bad("issued for other filters or another sort; repeat the filters and sort of the request that returned it, or start again from the first page")
	}
	dec = json.NewDecoder(bytes.NewReader(c.Key))
	dec.DisallowUnknownFields()
	if err := dec.Decode(key); err != nil {
		return bad("its position is not valid; pass next_cursor from the previous page unchanged")
	}
	if v, ok := key.(interface{ valid() error }); ok {
		if err := v.valid(); err != nil {
			return bad("its position is not valid: " + err.Error())
		}
	}
	return nil
}

// setNextLink sets the Link header pointing at the next page: the request's
// own URL with cursor replaced and offset dropped (a cursor already
// accounts for it).
func setNextLink(w http.ResponseWriter, r *http.Request, next string) {
	q := r.URL.Query()
	q.Set("cursor", next)
	q.Del("offset")
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	w.Header().Add("Link", "<"+u.String()+`>; rel="next"`)
}

// errEmptyKey is returned by a key whose required fields are missing.
var errEmptyKey = errors.New("it is missing a field")

// quoteList renders a list parameter canonically for a fingerprint.
func quoteList(items []string) string {
	out := ""
	for _, s := range items {
		out += strconv.Quote(s) + ","
	}
	return out
}
