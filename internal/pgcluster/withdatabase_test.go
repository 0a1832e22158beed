package pgcluster

import "testing"

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/bench?sslmode=disable"},
		{"postgres://u:p@host/db", "postgres://u:p@host/bench"},
		{"postgres://u@host:1?connect_timeout=2", "postgres://u@host:1/bench?connect_timeout=2"},
	} {
		got, err := WithDatabase(tc.in, "bench")
		if err != nil || got != tc.want {
			t.Errorf("WithDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := WithDatabase("postgres://host:notaport/x", "y"); err == nil {
		t.Error("a malformed URL must be an error")
	}
}
