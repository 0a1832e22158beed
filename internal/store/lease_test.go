package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/testdb"
)

// Replicas racing for a lease nobody holds yet all get an answer: one of
// them holds it, and every one is told which. (The loser's statement could
// not see the winner's row, inserted after its snapshot, and answered
// nothing: "acquire leader lease: not found" at every replica's start.)
func TestLeaseRaceAnswersEveryone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, testdb.New(t))
	for round := range 30 {
		name := fmt.Sprintf("race-%d", round)
		const n = 8
		holders := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				l, err := s.AcquireLease(ctx, name, fmt.Sprintf("r%d", i), time.Minute)
				holders[i], errs[i] = l.Holder, err
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: replica r%d: %v", round, i, err)
			}
			if holders[i] != holders[0] || holders[i] == "" {
				t.Fatalf("round %d: replicas disagree on the holder: %q", round, holders)
			}
		}
	}
}
