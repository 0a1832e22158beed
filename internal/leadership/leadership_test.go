package leadership_test

import (
	"context"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/leadership"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func newStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.New(store.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func elector(t *testing.T, s *store.Store, id string, ttl time.Duration) *leadership.Elector {
	t.Helper()
	e, err := leadership.New(leadership.Config{Store: s, ReplicaID: id, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	return e
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOneLeaderAndHandOverOnStop(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	s := newStore(t, dsn)
	ttl := 900 * time.Millisecond
	a := elector(t, s, "replica-a", ttl)
	waitFor(t, 5*time.Second, "a leads", a.IsLeader)
	b := elector(t, s, "replica-b", ttl)
	waitFor(t, 5*time.Second, "b sees a", func() bool { return b.Status().Holder == "replica-a" })
	if b.IsLeader() {
		t.Fatal("two leaders")
	}
	// A clean stop resigns: b takes over at its next attempt, within a
	// third of the TTL, not after the lease expires.
	stopped := time.Now()
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.IsLeader() {
		t.Fatal("a still leads after Stop")
	}
	waitFor(t, ttl, "b leads after a resigned", b.IsLeader)
	t.Logf("hand-over took %s", time.Since(stopped))
	if err := a.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestTakeOverFromACrashedLeader(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	ttl := 900 * time.Millisecond
	crashing, err := store.New(store.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	a := elector(t, crashing, "replica-a", ttl)
	waitFor(t, 5*time.Second, "a leads", a.IsLeader)
	b := elector(t, newStore(t, dsn), "replica-b", ttl)
	// The leader loses its database without resigning (its pool closes, as
	// when the process is killed): its lease is no longer renewed.
	crashing.Close()
	lost := time.Now()
	waitFor(t, 2*ttl, "a's own view lapses", func() bool { return !a.IsLeader() })
	waitFor(t, 2*ttl, "b takes over within the TTL", b.IsLeader)
	t.Logf("take-over took %s", time.Since(lost))
	if st := b.Status(); st.Holder != "replica-b" || !st.Leader {
		t.Fatalf("b's status: %+v", st)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	if _, err := leadership.New(leadership.Config{}); err == nil {
		t.Fatal("want an error without a store")
	}
	s := newStore(t, testdb.New(t))
	if _, err := leadership.New(leadership.Config{Store: s, ReplicaID: "r", TTL: time.Millisecond}); err == nil {
		t.Fatal("want an error for a tiny TTL")
	}
	if err := func() error {
		e, err := leadership.New(leadership.Config{Store: s, ReplicaID: "r"})
		if err != nil {
			return err
		}
		return e.Stop(context.Background()) // before Start
	}(); err != nil {
		t.Fatal(err)
	}
}
