package registry

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// printer words the schema library's messages.
var printer = message.NewPrinter(language.English)

// schemaURL names a template's schema inside its own compiler; nothing is
// fetched from it.
const schemaURL = "urn:taskerd:template:schema"

// contextSchema is a template's compiled schema for task contexts. It is
// compiled at most once, when first needed, and shared by every copy of
// the Registered that holds it.
type contextSchema struct {
	raw  []byte
	once sync.Once
	s    *jsonschema.Schema
	err  error
}

func (c *contextSchema) compiled() (*jsonschema.Schema, error) {
	c.once.Do(func() {
		var errs []FieldError
		c.s, errs = compile(c.raw)
		if len(errs) > 0 {
			c.err = errors.New(errs[0].String())
		}
	})
	return c.s, c.err
}

// compileContextSchema compiles a template's schema, reporting problems
// with pointers relative to the schema.
func compileContextSchema(raw []byte) (*contextSchema, []FieldError) {
	s, errs := compile(raw)
	if len(errs) > 0 {
		return nil, errs
	}
	c := &contextSchema{raw: raw, s: s}
	c.once.Do(func() {})
	return c, nil
}

func compile(raw []byte) (*jsonschema.Schema, []FieldError) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, []FieldError{{Message: "is not valid JSON: " + err.Error()}}
	}
	switch doc.(type) {
	case map[string]any, bool:
	default:
		return nil, []FieldError{{Message: "must be a JSON Schema: an object (or true/false)"}}
	}
	c := jsonschema.NewCompiler()
	// A template's schema must be self-contained: by default the compiler
	// would read $ref targets from local files, which an API caller must
	// never be able to make the server do.
	c.UseLoader(noLoader{})
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, []FieldError{{Message: err.Error()}}
	}
	s, err := c.Compile(schemaURL)
	if err == nil {
		return s, nil
	}
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
		errs := leafErrors(ve, "")
		for i := range errs {
			errs[i].Message = "not a valid JSON Schema: " + errs[i].Message
		}
		return nil, errs
	}
	return nil, []FieldError{{Message: "not a valid JSON Schema: " + trimSchemaURL(err.Error())}}
}

// leafErrors flattens a validation error into one FieldError per
// offending value: the first failed keyword at its pointer (the other
// branches of an anyOf say the same thing less clearly).
func leafErrors(ve *jsonschema.ValidationError, prefix string) []FieldError {
	var out []FieldError
	seen := map[string]bool{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			ptr := prefix + pointerOf(e.InstanceLocation)
			if !seen[ptr] {
				seen[ptr] = true
				out = append(out, FieldError{Pointer: ptr, Message: e.ErrorKind.LocalizedString(printer)})
			}
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

func pointerOf(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapePointer(t))
	}
	return b.String()
}

func trimSchemaURL(s string) string {
	return strings.ReplaceAll(s, schemaURL, "schema")
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("$ref to %q: a template's schema cannot refer to other documents", url)
}

// validateDocument validates a JSON document (a task context) against s.
func validateDocument(s *jsonschema.Schema, doc []byte) []FieldError {
	if len(bytes.TrimSpace(doc)) == 0 {
		doc = []byte("{}")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return []FieldError{{Message: "is not valid JSON: " + err.Error()}}
	}
	err = s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		return leafErrors(ve, "")
	}
	return []FieldError{{Message: err.Error()}}
}
