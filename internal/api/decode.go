package api

import (
	"bytes"
	"cmp"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/taskerd/taskerd/internal/jsonb"
)

// DecodeJSON strictly decodes the JSON request body into dst, which must be
// a non-nil pointer. Every failure the client caused is returned as a
// *Problem ready for WriteError: 415 for a body that is not JSON, 400 for one
// that does not parse (empty, malformed, invalid UTF-8, trailing data), 413
// for one over the BodyLimit, and 422 with JSON pointers for unknown fields
// and values of the wrong type. Any other error is a programming fault (dst
// not a pointer) and becomes a 500.
//
// DecodeJSON reads the whole body into memory; BodyLimit is what bounds it.
func DecodeJSON(r *http.Request, dst any) error {
	if p := checkContentType(r.Header.Get("Content-Type")); p != nil {
		return p
	}

	var body []byte
	if r.Body != nil {
		var err error
		// Reading everything first lets UTF-8 and trailing data be checked on
		// the bytes, and lets error pointers be computed from them.
		if body, err = io.ReadAll(r.Body); err != nil {
			if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
				return PayloadTooLarge(fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit))
			}
			if ctxErr := r.Context().Err(); ctxErr != nil {
				return fmt.Errorf("read request body: %w", ctxErr)
			}
			return BadRequest("the request body could not be read: " + err.Error())
		}
	}
	if len(trimJSONSpace(body)) == 0 {
		return BadRequest("request body is empty")
	}
	// encoding/json silently turns invalid UTF-8 inside strings into U+FFFD;
	// refuse it instead of storing mangled names.
	if !utf8.Valid(body) {
		return BadRequest(fmt.Sprintf("request body is not valid UTF-8 at %s", position(body, invalidUTF8Offset(body))))
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeProblem(err, body, dst)
	}
	end := dec.InputOffset()
	if rest := trimJSONSpace(body[end:]); len(rest) > 0 {
		off := len(body) - len(rest)
		return BadRequest(fmt.Sprintf("unexpected data after the JSON value at %s; send exactly one value", position(body, off)))
	}
	// encoding/json accepts escapes that PostgreSQL refuses to store (in
	// text and in jsonb alike); found here, they are the client's 400
	// rather than a failed INSERT's 500.
	if off, why := jsonb.Unstorable(body[:end]); off >= 0 {
		return BadRequest(fmt.Sprintf("request body holds %s at %s", why, position(body, off)))
	}
	// encoding/json keeps the last of duplicate keys, other parsers the
	// first: a proxy that checked one value while taskerd used the other
	// is how such differences become holes. A key appears once per object.
	if ptr, key, found := duplicateKey(body[:end]); found {
		msg := fmt.Sprintf("duplicate key %q: a key may appear once per object", key)
		return BadRequest(fmt.Sprintf("%s, at %s", msg, ptr), FieldError{Pointer: ptr, Detail: msg})
	}
	return nil
}

// duplicateKey finds the first key that repeats within one object of a
// well-formed document, and its pointer.
func duplicateKey(body []byte) (ptr, key string, found bool) {
	type frame struct {
		keys    map[string]struct{} // nil for an array
		wantKey bool
		seg     string // the member or element being read, for the pointer
		index   int
	}
	var stack []frame
	valueDone := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].keys != nil {
				stack[n-1].wantKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", false
		}
		n := len(stack)
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:n-1]
			valueDone()
			continue
		}
		if n > 0 && stack[n-1].keys != nil && stack[n-1].wantKey {
			k, _ := tok.(string)
			if _, dup := stack[n-1].keys[k]; dup {
				path := make([]string, 0, n)
				for _, f := range stack[:n-1] {
					path = append(path, f.seg)
				}
				return pointerOf(append(path, k)), k, true
			}
			stack[n-1].keys[k] = struct{}{}
			stack[n-1].wantKey, stack[n-1].seg = false, k
			continue
		}
		if n > 0 && stack[n-1].keys == nil {
			stack[n-1].seg = strconv.Itoa(stack[n-1].index)
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]struct{}{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		default:
			valueDone()
		}
	}
}

// checkContentType accepts application/json and any +json type. A missing
// Content-Type is accepted too, because curl users forget it.
func checkContentType(ct string) *Problem {
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return UnsupportedMediaType(fmt.Sprintf("malformed Content-Type %q; send %s", ct, ContentTypeJSON))
	}
	if mt != ContentTypeJSON && !strings.HasSuffix(mt, "+json") {
		return UnsupportedMediaType(fmt.Sprintf("unsupported Content-Type %q; send %s", mt, ContentTypeJSON))
	}
	// RFC 8259 §8.1: JSON exchanged between systems is UTF-8.
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return UnsupportedMediaType(fmt.Sprintf("unsupported charset %q in Content-Type; send UTF-8", cs))
	}
	return nil
}

// unknownFieldPrefix is how encoding/json v1 words an unknown field. It
// offers no error type for it, so matching the text is the only way.
const unknownFieldPrefix = "json: unknown field "

func decodeProblem(err error, body []byte, dst any) error {
	if p, ok := errors.AsType[*Problem](err); ok {
		return p // a custom UnmarshalJSON already said what is wrong
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		// Offset counts the bytes read, including the offending one.
		return BadRequest(fmt.Sprintf("malformed JSON at %s: %s", position(body, int(se.Offset)-1), se.Error()))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return BadRequest(fmt.Sprintf("malformed JSON: the body ends at %s before the value is complete", position(body, len(body))))
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		ptr := pointerAtOffset(body, te.Offset)
		msg := fmt.Sprintf("expected %s, got %s", jsonTypeName(te.Type), gotName(te.Value))
		return ValidationFailed(fmt.Sprintf("wrong type at %s: %s", ptr, msg), FieldError{Pointer: ptr, Detail: msg})
	}
	if rest, ok := strings.CutPrefix(err.Error(), unknownFieldPrefix); ok {
		key, uerr := strconv.Unquote(rest)
		if uerr != nil {
			key = rest
		}
		ptr := unknownFieldPointer(body, reflect.TypeOf(dst), key)
		msg := fmt.Sprintf("unknown field %q", key)
		return ValidationFailed(fmt.Sprintf("%s at %s", msg, ptr), FieldError{Pointer: ptr, Detail: msg})
	}
	if _, ok := errors.AsType[*json.InvalidUnmarshalError](err); ok {
		return fmt.Errorf("decode request body: %w", err)
	}
	// What is left comes from UnmarshalJSON/UnmarshalText of field types
	// (time.Time, uuid.UUID): the syntax was fine, a value was not, and
	// encoding/json does not say which one.
	return ValidationFailed("invalid value in request body: " + err.Error())
}

func trimJSONSpace(b []byte) []byte {
	// Only the four JSON whitespace bytes (RFC 8259 §2), not Unicode spaces.
	return bytes.TrimLeft(b, " \t\r\n")
}

func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// position describes a byte offset as line, column (both 1-based, column in
// bytes) and the 0-based offset itself.
func position(body []byte, off int) string {
	off = max(0, min(off, len(body)))
	line := 1 + bytes.Count(body[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(body[:off], '\n')
	return fmt.Sprintf("line %d, column %d (byte offset %d)", line, col, off)
}

func gotName(value string) string {
	// encoding/json says "bool" and "number 1.5"; clients know "boolean" and want the number.
	if value == "bool" {
		return "boolean"
	}
	return value
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func customUnmarshaler(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(jsonUnmarshalerType) || pt.Implements(textUnmarshalerType)
}

// jsonTypeName names the JSON type a Go type decodes from, in the words of the JSON spec.
func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if customUnmarshaler(t) {
		// uuid.UUID is an array and time.Time a struct, yet both are sent as strings.
		return "string"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "base64 string"
		}
		return "array"
	case reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	default:
		return t.String()
	}
}

// pointerSegment escapes one reference token per RFC 6901 §3.
func pointerSegment(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func pointerOf(path []string) string {
	var b strings.Builder
	for _, seg := range path {
		b.WriteByte('/')
		b.WriteString(pointerSegment(seg))
	}
	return b.String()
}

// walkJSON calls visit for every object key and every value of a
// syntactically valid document, in document order, with the path to it and
// the byte offset where its token ends. It stops when visit returns false.
func walkJSON(body []byte, visit func(path []string, tok json.Token, isKey bool, end int64) bool) {
	type frame struct {
		object  bool
		wantKey bool   // objects: the next token is a key or '}'
		key     string // objects: the member being read
		index   int    // arrays: the element being read
	}
	var stack []*frame
	path := func() []string {
		p := make([]string, len(stack))
		for i, f := range stack {
			if f.object {
				p[i] = f.key
			} else {
				p[i] = strconv.Itoa(f.index)
			}
		}
		return p
	}
	// valueDone moves the enclosing container on to its next member or element.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if top := stack[len(stack)-1]; top.object {
			top.wantKey = true
		} else {
			top.index++
		}
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		end := dec.InputOffset()
		delim, isDelim := tok.(json.Delim)
		if isDelim && (delim == '}' || delim == ']') {
			stack = stack[:len(stack)-1]
			valueDone()
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			stack[n-1].key, _ = tok.(string)
			stack[n-1].wantKey = false
			if !visit(path(), tok, true, end) {
				return
			}
			continue
		}
		if !visit(path(), tok, false, end) {
			return
		}
		switch {
		case isDelim && delim == '{':
			stack = append(stack, &frame{object: true, wantKey: true})
		case isDelim && delim == '[':
			stack = append(stack, &frame{})
		default:
			valueDone()
		}
	}
}

// pointerAtOffset returns the pointer of the value whose token ends at
// offset; encoding/json reports type errors at the end of a scalar or just
// after the bracket that opens an object or array.
func pointerAtOffset(body []byte, offset int64) string {
	ptr := ""
	walkJSON(body, func(path []string, _ json.Token, isKey bool, end int64) bool {
		if isKey || end < offset {
			return true
		}
		ptr = pointerOf(path)
		return false
	})
	return ptr
}

// unknownFieldPointer finds the member named key that t has no field for.
// encoding/json reports only the key, and the same key may be legitimate
// elsewhere (inside a map or an `any`), so candidates are checked against
// the type of the object that holds them. If none matches, the first
// occurrence of the key is the best guess.
func unknownFieldPointer(body []byte, t reflect.Type, key string) string {
	found, firstSeen := "", ""
	walkJSON(body, func(path []string, _ json.Token, isKey bool, _ int64) bool {
		if !isKey || path[len(path)-1] != key {
			return true
		}
		if firstSeen == "" {
			firstSeen = pointerOf(path)
		}
		holder := typeAtPath(t, path[:len(path)-1])
		if holder != nil && holder.Kind() == reflect.Struct {
			if _, ok := structFieldType(holder, key); !ok {
				found = pointerOf(path)
				return false
			}
		}
		return true
	})
	return cmp.Or(found, firstSeen, "/"+pointerSegment(key))
}

// typeAtPath follows path from t the way encoding/json would, returning nil
// where it cannot (an `any`, a custom unmarshaler, a mismatch).
func typeAtPath(t reflect.Type, path []string) reflect.Type {
	for _, seg := range path {
		t = derefType(t)
		if t == nil || customUnmarshaler(t) {
			return nil
		}
		switch t.Kind() {
		case reflect.Struct:
			ft, ok := structFieldType(t, seg)
			if !ok {
				return nil
			}
			t = ft
		case reflect.Map, reflect.Slice, reflect.Array:
			t = t.Elem()
		default:
			return nil
		}
	}
	t = derefType(t)
	if t == nil || customUnmarshaler(t) {
		return nil
	}
	return t
}

func derefType(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// structFieldType finds the field encoding/json would fill for key: an exact
// name match first, then a case-insensitive one, looking through untagged
// embedded structs. It skips encoding/json's tie-breaking between equally
// deep embedded fields, which only matters for types nobody should write.
func structFieldType(t reflect.Type, key string) (reflect.Type, bool) {
	if ft, ok := findField(t, key, func(a, b string) bool { return a == b }, 0); ok {
		return ft, true
	}
	return findField(t, key, strings.EqualFold, 0)
}

func findField(t reflect.Type, key string, match func(a, b string) bool, depth int) (reflect.Type, bool) {
	if depth > 16 { // embedded pointer cycles
		return nil, false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			if et := derefType(f.Type); et.Kind() == reflect.Struct {
				if ft, ok := findField(et, key, match, depth+1); ok {
					return ft, true
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if match(name, key) {
			return f.Type, true
		}
	}
	return nil, false
}
