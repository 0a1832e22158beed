package analysissql_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/google/uuid"
)

// randomTask draws a DAG of 5 to 40 steps whose edges go from lower to
// higher index (so index order is a topological order), with random states,
// attempt counts, budgets, backoffs and errors. The draws are not all states
// the engine could produce (a complete child under a pending parent, say):
// the rules must hold for any rows.
func randomTask(seed uint64) []step {
	rng := rand.New(rand.NewPCG(seed, 0x7a5c3e))
	n := 5 + rng.IntN(36)
	density := 0.05 + 0.3*rng.Float64()
	statuses := []string{
		"pending", "pending", "pending", "pending", "complete", "complete", "complete",
		"in_progress", "error", "resolved_manually", "cancelled",
	}
	steps := make([]step, n)
	for j := range steps {
		s := step{
			Name:         fmt.Sprintf("s%02d", j),
			Status:       statuses[rng.IntN(len(statuses))],
			Attempts:     rng.IntN(5),
			RetryBase:    rng.IntN(2),
			RetryLimit:   rng.IntN(5),
			NotRetryable: rng.IntN(5) == 0,
			Run:          runAt(rng.IntN(3)),
			LastError:    rng.IntN(3) == 0,
		}
		if s.RetryLimit == 0 {
			s.RetryLimit = -1 // a limit of 0, not the fixture's default
		}
		switch {
		case s.Status == "error":
			s.History = []string{"in_progress", "error"}
		case s.Status == "pending" && s.LastError:
			s.History = []string{"in_progress", "error", "pending"}
		}
		for i := range j {
			if rng.Float64() < density {
				s.Parents = append(s.Parents, steps[i].Name)
			}
		}
		steps[j] = s
	}
	return steps
}

// expected is what the documented rules say about one step, computed in Go.
type expected struct {
	ready, deps, eligible  bool
	reason                 string
	total, done            int
	nextRetry, lastFailure bool
	level                  int
	retrying               bool
}

func expectSteps(steps []step) map[string]expected {
	byName := map[string]step{}
	out := map[string]expected{}
	for _, s := range steps { // parents come before children
		byName[s.Name] = s
		limit := s.RetryLimit
		if limit < 0 {
			limit = 0
		}
		budget := s.Attempts-s.RetryBase < limit
		x := expected{total: len(s.Parents)}
		for _, p := range s.Parents {
			if st := byName[p].Status; st == "complete" || st == "resolved_manually" {
				x.done++
			}
			x.level = max(x.level, out[p].level+1)
		}
		x.deps = x.done == x.total
		x.eligible = !s.NotRetryable && budget
		deferred := s.Run == runFuture
		x.ready = s.Status == "pending" && x.deps && !deferred && budget
		x.nextRetry = s.Status == "pending" && s.LastError && deferred
		x.lastFailure = len(s.History) >= 2 && s.History[1] == "error"
		x.retrying = s.Status == "pending" && s.LastError
		switch {
		case s.Status == "complete" || s.Status == "resolved_manually" || x.ready:
		case s.Status == "cancelled":
			x.reason = "cancelled"
		case s.Status == "in_progress":
			x.reason = "running"
		case s.Status == "error" && !s.NotRetryable && !budget:
			x.reason = "retries_exhausted"
		case s.Status == "error":
			x.reason = "failed"
		case !budget:
			x.reason = "retries_exhausted"
		case !x.deps:
			x.reason = "waiting_for_dependencies"
		case deferred:
			x.reason = "in_backoff"
		}
		out[s.Name] = x
	}
	return out
}

func expectContext(steps []step, xs map[string]expected) execContext {
	var c execContext
	retrying := 0
	for _, s := range steps {
		c.TotalSteps++
		switch s.Status {
		case "pending":
			c.PendingSteps++
		case "in_progress":
			c.InProgressSteps++
		case "complete", "resolved_manually":
			c.CompletedSteps++
		case "error":
			c.FailedSteps++
		case "cancelled":
			c.CancelledSteps++
		}
		if xs[s.Name].ready {
			c.ReadySteps++
		}
		if xs[s.Name].retrying {
			retrying++
		}
	}
	switch {
	case c.CompletedSteps == c.TotalSteps:
		c.ExecutionStatus, c.RecommendedAction = "all_complete", "finalize_task"
	case c.ReadySteps > 0:
		c.ExecutionStatus, c.RecommendedAction = "has_ready_steps", "execute_ready_steps"
	case c.InProgressSteps > 0:
		c.ExecutionStatus, c.RecommendedAction = "processing", "wait_for_completion"
	case c.FailedSteps > 0:
		c.ExecutionStatus, c.RecommendedAction = "blocked_by_failures", "handle_failures"
	default:
		c.ExecutionStatus, c.RecommendedAction = "waiting_for_dependencies", "wait_for_dependencies"
	}
	switch {
	case c.TotalSteps == 0:
		c.HealthStatus = "unknown"
	case c.ExecutionStatus == "blocked_by_failures":
		c.HealthStatus = "blocked"
	case retrying > 0:
		c.HealthStatus = "recovering"
	default:
		c.HealthStatus = "healthy"
	}
	// Round half away from zero to two decimals, as numeric round() does,
	// in integer arithmetic: 100 * completed / total in hundredths.
	hundredths := (20000*c.CompletedSteps/c.TotalSteps + 1) / 2
	c.CompletionPercentage = fmt.Sprintf("%d.%02d", hundredths/100, hundredths%100)
	return c
}

// The SQL functions agree with a Go reading of the same rules on random
// DAGs, and the batch forms agree with the single forms.
func TestRandomDAGsMatchRules(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var ids []uuid.UUID
	var singles []readiness
	var contexts []execContext
	readyTotal, blockedTotal := 0, 0
	statuses := map[string]int{}
	for seed := uint64(1); seed <= 30; seed++ {
		steps := randomTask(seed)
		tk := e.task(t, steps...)
		ids = append(ids, tk.ID)
		xs := expectSteps(steps)

		got := e.readinessOf(t, tk.ID, nil)
		if len(got) != len(steps) {
			t.Fatalf("seed %d: %d readiness rows, want %d", seed, len(got), len(steps))
		}
		for _, s := range steps {
			r, x := got[s.Name], xs[s.Name]
			if r.ReadyForExecution != x.ready || r.DependenciesSatisfied != x.deps || r.RetryEligible != x.eligible ||
				deref(r.BlockedReason) != x.reason || r.TotalParents != x.total || r.CompletedParents != x.done ||
				(r.NextRetryAt != nil) != x.nextRetry || (r.LastFailureAt != nil) != x.lastFailure ||
				r.Attempts != s.Attempts || r.CurrentState != s.Status {
				t.Fatalf("seed %d, step %s %+v:\n got ready=%v deps=%v eligible=%v reason=%q parents=%d/%d next_retry=%v last_failure=%v\nwant %+v",
					seed, s.Name, s, r.ReadyForExecution, r.DependenciesSatisfied, r.RetryEligible, deref(r.BlockedReason),
					r.CompletedParents, r.TotalParents, r.NextRetryAt, r.LastFailureAt, x)
			}
			if x.ready {
				readyTotal++
			}
			if x.reason != "" {
				blockedTotal++
			}
		}

		levels := e.levelsOf(t, tk.ID)
		for _, s := range steps {
			if levels[s.Name] != xs[s.Name].level {
				t.Fatalf("seed %d: %s at level %d, want %d", seed, s.Name, levels[s.Name], xs[s.Name].level)
			}
		}

		c := e.contextOf(t, tk.ID)
		checkContext(t, c, expectContext(steps, xs))
		statuses[c.ExecutionStatus]++

		singles = append(singles, query[readiness](t, e, `SELECT * FROM get_step_readiness_status($1)`, tk.ID)...)
		contexts = append(contexts, c)
	}
	// The draws must exercise the rules, not just agree on trivia.
	if readyTotal < 20 || blockedTotal < 100 || len(statuses) < 3 {
		t.Fatalf("random tasks too uniform: %d ready, %d blocked steps, execution statuses %v", readyTotal, blockedTotal, statuses)
	}
	t.Logf("%d ready and %d blocked steps; execution statuses %v", readyTotal, blockedTotal, statuses)

	batch := query[readiness](t, e, `SELECT * FROM get_step_readiness_status_batch($1)`, ids)
	if !reflect.DeepEqual(batch, singles) {
		t.Fatalf("readiness batch (%d rows) differs from singles (%d rows)", len(batch), len(singles))
	}
	batchContexts := query[execContext](t, e, `SELECT `+contextColumns+` FROM get_task_execution_contexts_batch($1)`, ids)
	if !reflect.DeepEqual(batchContexts, contexts) {
		t.Fatalf("context batch differs from singles\nbatch   %+v\nsingles %+v", batchContexts, contexts)
	}
}
