package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

// Concurrent audit events are group-committed: every one is written once,
// and an event the database refuses fails alone, not its batch-mates.
func TestRecordAuditConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, testdb.New(t))
	const n = 300
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcome := store.AuditSucceeded
			if i == 150 {
				outcome = "bogus" // refused by the table's CHECK
			}
			errs[i] = s.RecordAudit(ctx, store.AuditEvent{
				Actor: fmt.Sprintf("user-%d", i), Action: "tasker.task:create", Resource: "task",
				Method: "POST", Path: "/tasker/tasks", Status: 201, Outcome: outcome,
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 150) {
			t.Errorf("event %d: error %v", i, err)
		}
	}
	seen := map[string]int{}
	var after *store.AuditKey
	for {
		page, err := s.ListAudit(ctx, store.AuditFilter{}, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			seen[e.Actor]++
		}
		if len(page) < 100 {
			break
		}
		last := page[len(page)-1]
		after = &store.AuditKey{OccurredAt: last.OccurredAt, ID: last.ID}
	}
	if len(seen) != n-1 {
		t.Errorf("%d distinct events written, want %d", len(seen), n-1)
	}
	for actor, c := range seen {
		if c != 1 || actor == "user-150" {
			t.Errorf("%s written %d times", actor, c)
		}
	}
}
