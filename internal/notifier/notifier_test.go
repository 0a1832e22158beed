package notifier_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func receive(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("no notification %q", want)
		}
	}
}

func TestNotifier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	n, err := notifier.New(notifier.Config{DatabaseURL: dsn, ReconnectMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := n.Subscribe("chan_a")
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop(ctx); _ = n.Stop(ctx) })
	<-n.Ready()

	sender, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close(ctx)
	notify := func(ch, payload string) {
		t.Helper()
		if _, err := sender.Exec(ctx, "SELECT pg_notify($1, $2)", ch, payload); err != nil {
			t.Fatal(err)
		}
	}
	notify("chan_a", "one")
	receive(t, a, "one")

	// A channel subscribed after start is listened to without losing the first.
	b, unsubscribe := n.Subscribe("chan_b")
	deadline := time.Now().Add(20 * time.Second)
	got := false
	for !got && time.Now().Before(deadline) {
		notify("chan_b", "two")
		select {
		case p := <-b:
			got = p == "two"
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !got {
		t.Fatal("late subscription never received")
	}
	notify("chan_a", "three")
	receive(t, a, "three")

	// The listening connection dies: subscribers hear Reconnected, then
	// notifications flow again.
	if _, err := sender.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"); err != nil {
		t.Fatal(err)
	}
	receive(t, a, notifier.Reconnected)
	notify("chan_a", "four")
	receive(t, a, "four")

	unsubscribe()
	notify("chan_b", "five")
	notify("chan_a", "six")
	receive(t, a, "six")
	select {
	case p := <-b:
		if p == "five" {
			t.Fatal("unsubscribed channel still receives")
		}
	default:
	}
}

func TestStopBeforeStart(t *testing.T) {
	t.Parallel()
	n, err := notifier.New(notifier.Config{DatabaseURL: "postgres://x@127.0.0.1:1/x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := notifier.New(notifier.Config{}); err == nil {
		t.Fatal("empty DatabaseURL accepted")
	}
}
