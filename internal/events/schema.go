package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// Schema is a JSON Schema (draft 2020-12 subset) of a payload, built from
// its Go type: the doc tags of the fields are the descriptions, and fields
// without omitempty are required.
type Schema struct {
	Type        string             `json:"type,omitempty"`
	Format      string             `json:"format,omitempty"`
	Description string             `json:"description,omitempty"`
	Properties  map[string]*Schema `json:"properties,omitempty"`
	// Order keeps the properties in declaration order for documents.
	Order    []string `json:"-"`
	Required []string `json:"required,omitempty"`
	Items    *Schema  `json:"items,omitempty"`
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage(nil))
)

// SchemaOf builds the schema of a payload type.
func SchemaOf(t reflect.Type) *Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return &Schema{Type: "string", Format: "date-time"}
	case t == rawType:
		return &Schema{} // any JSON value
	}
	switch t.Kind() {
	case reflect.String:
		return &Schema{Type: "string"}
	case reflect.Bool:
		return &Schema{Type: "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return &Schema{Type: "integer"}
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: "number"}
	case reflect.Slice, reflect.Array:
		return &Schema{Type: "array", Items: SchemaOf(t.Elem())}
	case reflect.Struct:
		s := &Schema{Type: "object", Properties: map[string]*Schema{}}
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			p := SchemaOf(f.Type)
			p.Description = f.Tag.Get("doc")
			s.Properties[name] = p
			s.Order = append(s.Order, name)
			if !strings.Contains(opts, "omitempty") {
				s.Required = append(s.Required, name)
			}
		}
		return s
	}
	return &Schema{}
}

// TypeName is the schema's type as documents show it: "string (date-time)",
// "array of object", "any".
func (s *Schema) TypeName() string {
	switch {
	case s.Type == "":
		return "any"
	case s.Type == "array" && s.Items != nil:
		return "array of " + s.Items.TypeName()
	case s.Format != "":
		return s.Type + " (" + s.Format + ")"
	}
	return s.Type
}
