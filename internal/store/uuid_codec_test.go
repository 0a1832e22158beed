package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

// uuid.UUID values, pointers and arrays travel to PostgreSQL and back
// through the store's codec unchanged, NULL included.
func TestUUIDCodecRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, testdb.New(t))
	a, b := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewRandom())
	var nilPtr *uuid.UUID
	var gotA, gotNull uuid.UUID
	var gotArr []uuid.UUID
	var text string
	var isNull bool
	err := store.QueryRowForTest(ctx, s, `SELECT $1::uuid, $1::uuid::text, $2::uuid[], $3::uuid IS NULL, NULL::uuid`,
		[]any{a, []uuid.UUID{b, a}, nilPtr}, &gotA, &text, &gotArr, &isNull, &gotNull)
	if err != nil {
		t.Fatal(err)
	}
	if gotA != a || text != a.String() || len(gotArr) != 2 || gotArr[0] != b || gotArr[1] != a || !isNull || gotNull != uuid.Nil {
		t.Fatalf("round trip: %s %s %v %v %s", gotA, text, gotArr, isNull, gotNull)
	}
}
