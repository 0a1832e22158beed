// Package scalar holds the GraphQL scalars that gqlgen has no built-in
// marshaler for.
package scalar

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/99designs/gqlgen/graphql"
)

// JSON is any JSON value, passed through as the store keeps it.
type JSON = json.RawMessage

// MarshalJSON writes a stored JSON value as it is; empty means null.
func MarshalJSON(v json.RawMessage) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		if len(v) == 0 {
			_, _ = io.WriteString(w, "null")
			return
		}
		_, _ = w.Write(v)
	})
}

// UnmarshalJSON reads a JSON argument: a variable arrives decoded (maps,
// slices, numbers), an inline literal as the same; both are re-encoded.
func UnmarshalJSON(v any) (json.RawMessage, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not a JSON value: %w", err)
	}
	return raw, nil
}
