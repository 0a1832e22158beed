package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Format is the syntax a template document is written in. Both describe
// the same schema: a YAML document is turned into JSON first, and one
// strict decoder reads either.
type Format string

// Template formats.
const (
	FormatYAML Format = "yaml"
	FormatJSON Format = "json"
)

// FormatForContentType maps a request's Content-Type to a Format. An empty
// Content-Type reads as YAML, which also accepts JSON.
func FormatForContentType(contentType string) (Format, error) {
	if strings.TrimSpace(contentType) == "" {
		return FormatYAML, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("malformed Content-Type %q", contentType)
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return FormatJSON, nil
	case mt == "application/yaml" || mt == "application/x-yaml" || mt == "text/yaml" || mt == "text/x-yaml" || strings.HasSuffix(mt, "+yaml"):
		return FormatYAML, nil
	}
	return "", fmt.Errorf("unsupported Content-Type %q: send application/json or application/yaml", mt)
}

// FormatForFile picks the format from a file name: .json is JSON, anything
// else YAML.
func FormatForFile(name string) Format {
	if strings.EqualFold(filepath.Ext(name), ".json") {
		return FormatJSON
	}
	return FormatYAML
}

// decodeDocument turns a document into a docTemplate. Syntax errors stop
// at the first; unknown fields and wrong types are all collected, with
// the offending values dropped so that validation can go on and report
// the rest.
func decodeDocument(data []byte, format Format, errs *errorList) (*docTemplate, bool) {
	var tree any
	var err error
	if format == FormatJSON {
		tree, err = parseJSON(data)
	} else {
		tree, err = parseYAML(data)
	}
	if err != nil {
		errs.add("", err.Error())
		return nil, false
	}
	if _, ok := tree.(map[string]any); !ok {
		errs.add("", fmt.Sprintf("a template must be an object, got %s", jsonKind(tree)))
		return nil, false
	}
	// PostgreSQL stores no NUL character, in text or jsonb: refused here,
	// with its place, rather than by the INSERT of the registration.
	if ptr, found := nulString(tree, ""); found {
		errs.add(ptr, "holds a NUL character (\\u0000, \\0 in YAML), which cannot be stored")
		return nil, false
	}
	tree = checkShape(tree, reflect.TypeFor[docTemplate](), "", errs)
	// The tree now matches docTemplate, so this decode cannot fail on types.
	b, err := json.Marshal(tree)
	if err != nil {
		errs.add("", "the document cannot be represented as JSON: "+err.Error())
		return nil, false
	}
	var doc docTemplate
	if err := json.Unmarshal(b, &doc); err != nil {
		errs.add("", "the document could not be decoded: "+err.Error())
		return nil, false
	}
	return &doc, true
}

// nulString finds the first key or string value of a parsed document
// that holds a NUL character, and its pointer.
func nulString(v any, ptr string) (string, bool) {
	path, found := nulPath(v)
	if !found {
		return "", false
	}
	for _, tok := range slices.Backward(path) {
		ptr += "/" + tok
	}
	return ptr, true
}

// nulPath finds a NUL in v and returns the pointer's tokens, innermost
// first; they are only built on the way out of a find, so a large
// template without a NUL costs one walk and no string building.
func nulPath(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		return nil, strings.IndexByte(v, 0) >= 0
	case map[string]any:
		for _, k := range sortedKeys(v) {
			if strings.IndexByte(k, 0) >= 0 {
				return []string{escapePointer(k)}, true
			}
			if p, found := nulPath(v[k]); found {
				return append(p, escapePointer(k)), true
			}
		}
	case []any:
		for i, e := range v {
			if p, found := nulPath(e); found {
				return append(p, strconv.Itoa(i)), true
			}
		}
	}
	return nil, false
}

func parseJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("the document is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the document is empty")
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("malformed JSON at %s: %v", position(data, int(se.Offset)-1), err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errors.New("malformed JSON: the document ends before the value is complete")
		}
		return nil, fmt.Errorf("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the JSON value at %s", position(data, int(dec.InputOffset())))
	}
	return v, nil
}

// position describes a byte offset as "line L, column C".
func position(data []byte, off int) string {
	off = max(0, min(off, len(data)))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

// parseYAML reads one YAML document into JSON-compatible values. yaml.v3
// is used for its YAML 1.2 scalars (yes, no, on and off stay strings, so a
// step named "no" is not a boolean) and its duplicate-key errors; reading
// through yaml.Node lets timestamps stay the strings they were written as
// and keys be strings whatever they look like.
func parseYAML(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("the document is not valid UTF-8")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the document is empty")
		}
		return nil, fmt.Errorf("malformed YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("the file holds more than one YAML document; put one template in each file")
	}
	if err := plainScalars(&root, 0); err != nil {
		return nil, err
	}
	var v any
	if err := root.Decode(&v); err != nil {
		return nil, fmt.Errorf("malformed YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return jsonValue(v)
}

// plainScalars retags timestamps as strings and mapping keys as strings.
// Aliases are not followed: the nodes they point to are retagged where
// they are defined.
func plainScalars(n *yaml.Node, depth int) error {
	if depth > 200 {
		return errors.New("the YAML document is nested too deeply")
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!timestamp" {
			n.Tag = "!!str"
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.ScalarNode && k.Tag != "!!merge" {
				k.Tag = "!!str"
			}
		}
	}
	for _, c := range n.Content {
		if err := plainScalars(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// jsonValue converts what yaml.v3 decoded into the values encoding/json
// produces with UseNumber, refusing what JSON cannot hold.
func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool:
		return x, nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, fmt.Errorf("the YAML value %v has no JSON equivalent", x)
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("the YAML key %v is not a string; JSON objects have string keys", k)
			}
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	default:
		return nil, fmt.Errorf("the YAML value %v (%T) has no JSON equivalent", v, v)
	}
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// checkShape compares a decoded JSON tree with the Go type it must fill,
// reporting unknown fields and wrong types at their pointers, and returns
// the tree without the offending values. null is accepted anywhere a value
// may be absent (an empty YAML key means null).
func checkShape(v any, t reflect.Type, ptr string, errs *errorList) any {
	if v == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		return v
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			errs.shape(ptr, fmt.Sprintf("must be an object, got %s", jsonKind(v)))
			return nil
		}
		out := make(map[string]any, len(obj))
		for _, key := range sortedKeys(obj) {
			f, ok := fieldByJSONName(t, key)
			if !ok {
				errs.shape(ptr+"/"+escapePointer(key), fmt.Sprintf("unknown field %q", key))
				continue
			}
			if c := checkShape(obj[key], f.Type, ptr+"/"+escapePointer(key), errs); c != nil {
				out[key] = c
			}
		}
		return out
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			errs.shape(ptr, fmt.Sprintf("must be an object, got %s", jsonKind(v)))
			return nil
		}
		out := make(map[string]any, len(obj))
		for _, key := range sortedKeys(obj) {
			if c := checkShape(obj[key], t.Elem(), ptr+"/"+escapePointer(key), errs); c != nil {
				out[key] = c
			}
		}
		return out
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			errs.shape(ptr, fmt.Sprintf("must be an array, got %s", jsonKind(v)))
			return nil
		}
		out := make([]any, 0, len(arr))
		for i, e := range arr {
			p := ptr + "/" + strconv.Itoa(i)
			if e == nil {
				errs.shape(p, "must not be null")
				out = append(out, zeroJSON(t.Elem()))
				continue
			}
			c := checkShape(e, t.Elem(), p, errs)
			if c == nil {
				c = zeroJSON(t.Elem()) // keep the indexes of later elements
			}
			out = append(out, c)
		}
		return out
	case reflect.String:
		if _, ok := v.(string); !ok {
			errs.shape(ptr, fmt.Sprintf("must be a string, got %s", jsonKind(v)))
			return nil
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			errs.shape(ptr, fmt.Sprintf("must be true or false, got %s", jsonKind(v)))
			return nil
		}
	case reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			errs.shape(ptr, fmt.Sprintf("must be a whole number, got %s", jsonKind(v)))
			return nil
		}
		i, err := strconv.ParseInt(n.String(), 10, 32)
		if err != nil {
			f, ferr := n.Float64()
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
				errs.shape(ptr, fmt.Sprintf("must be a whole number, got %s", n))
				return nil
			}
			i = int64(f)
		}
		return json.Number(strconv.FormatInt(i, 10))
	}
	return v
}

func zeroJSON(t reflect.Type) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return map[string]any{}
	case reflect.String:
		return ""
	default:
		return nil
	}
}

func fieldByJSONName(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == key && name != "-" && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func jsonKind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "the number " + x.String()
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// escapePointer escapes one reference token per RFC 6901.
func escapePointer(s string) string { return pointerEscaper.Replace(s) }

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
