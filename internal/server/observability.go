package server

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/telemetry"
	"github.com/taskerd/taskerd/internal/version"
	"github.com/taskerd/taskerd/internal/webhooks"
)

// observability is how a replica's events leave the engine: the bus and
// its subscribers (metrics, traces, logs), the webhooks and their outbox,
// and the sink the engine publishes through.
type observability struct {
	tel      *telemetry.Telemetry
	bus      *events.Bus
	webhooks *webhooks.Service
	sink     *events.Sink
}

func newObservability(cfg Config, st *store.Store, notes *notifier.Notifier, logger *slog.Logger) (*observability, error) {
	s := cfg.Settings
	v := version.Get()
	tel, err := telemetry.New(context.Background(), telemetry.Config{Version: v.Version, Commit: v.Commit,
		SpanExporter: cfg.SpanExporter, Logger: logger})
	if err != nil {
		return nil, err
	}
	bus, err := events.NewBus(events.BusConfig{Buffer: s.EventBuffer, Resolver: st, Logger: logger})
	if err != nil {
		return nil, err
	}
	tel.Subscribe(bus, logger)
	// The bus runs from now on, not from Start: embedders (and the
	// benchmarks) create tasks through the engine before starting the
	// server, and those events must not wait in a buffer that fills up.
	// It holds no connection; Stop ends it whether or not Start ran.
	if err := bus.Start(context.Background()); err != nil {
		return nil, err
	}
	// Receivers are reached through the same guard as http steps: the
	// networks of TASKER_HTTP_DENY_CIDRS (cloud metadata) are refused.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	deny := s.HTTPDenyCIDRs
	if deny == nil {
		deny = handler.DefaultDenyCIDRs
	}
	transport.DialContext = handler.GuardedDialer(deny).DialContext
	hooks, err := webhooks.New(webhooks.Config{
		Store: st, Bus: bus, Notifier: notes, ReplicaID: s.ReplicaID,
		Client:  &http.Client{Transport: transport, Timeout: s.WebhookTimeout, CheckRedirect: noRedirects},
		Timeout: s.WebhookTimeout, MaxAttempts: s.WebhookMaxAttempts, Observer: tel.Metrics(), Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	sink, err := events.NewSink(events.SinkConfig{Bus: bus, Outbox: hooks, Decorator: tel})
	if err != nil {
		return nil, err
	}
	return &observability{tel: tel, bus: bus, webhooks: hooks, sink: sink}, nil
}

// noRedirects makes a receiver's redirect an answer (a failed attempt),
// never a second request with the signed body somewhere else.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// registryChanged publishes the template registry's changes (handler.*).
func (o *observability) registryChanged(_ context.Context, c registry.Change) {
	o.bus.Publish([]engine.Event{events.RegistryEvent(c)})
}

// watch tells the scrape-time metrics where to read.
func (o *observability) watch(st *store.Store, eng *engine.Engine) {
	o.tel.Metrics().SetSources(telemetry.Sources{
		RunningSteps: eng.RunningSteps,
		PoolStats:    st.PoolStats,
	})
}
