package events

import (
	"encoding/json"
	"time"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/registry"
)

// RegistryEvent turns a change of the template registry into its
// handler.* event.
func RegistryEvent(c registry.Change) engine.Event {
	ev := engine.Event{Name: "handler." + c.Kind, Namespace: c.Namespace, TaskName: c.Name, TaskVersion: c.Version,
		Reason: c.Outcome, Time: time.Now()}
	extra := struct {
		Source string         `json:"source,omitempty"`
		Errors []HandlerError `json:"errors,omitempty"`
	}{Source: c.Source}
	for _, fe := range c.Errors {
		extra.Errors = append(extra.Errors, HandlerError{Pointer: fe.Pointer, Message: fe.Message})
	}
	ev.Payload, _ = json.Marshal(extra)
	return ev
}
