package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sort"

	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/registry"
)

// eventHandlers serve the event catalog.
type eventHandlers struct {
	registry *registry.Registry // nil: no custom events listed
	logger   *slog.Logger
}

// EventDefinition is one event of the catalog.
type EventDefinition struct {
	Name        string `json:"name"`
	Category    string `json:"category"`
	Description string `json:"description"`
	// Transactional events are written to the webhook outbox in the
	// transaction of the state change they record.
	Transactional bool           `json:"transactional"`
	PayloadSchema *events.Schema `json:"payload_schema"`
}

// CustomEventDefinition is a business event a registered template declares.
type CustomEventDefinition struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Namespace   string `json:"namespace"`
	TaskName    string `json:"task_name"`
	TaskVersion string `json:"task_version"`
	// StepName is the declaring step; absent when the template declares it for every step.
	StepName string `json:"step_name,omitempty"`
}

// EventCatalogResponse is the body of GET /tasker/events.
type EventCatalogResponse struct {
	Events []EventDefinition `json:"events"`
	// EnvelopeSchema describes a webhook delivery's body; data is the payload.
	EnvelopeSchema *events.Schema `json:"envelope_schema"`
	// CustomEvents are declared by the live templates; their payload is
	// CustomPayloadSchema with the handler's payload inside.
	CustomEvents        []CustomEventDefinition `json:"custom_events"`
	CustomPayloadSchema *events.Schema          `json:"custom_payload_schema"`
}

// catalog answers GET /tasker/events[?category=task]: every event taskerd
// emits with its payload's JSON Schema, and the custom events of the live
// templates.
//
//	@Summary		The event catalog
//	@Description	Every event taskerd emits (task, step, workflow and handler events), when, whether its webhook deliveries are written in the transaction of its state change, and its payload's JSON Schema; the envelope webhooks receive; and the custom business events the live templates declare. docs/events.md is generated from the same catalog. Permission: tasker.event:index.
//	@Tags			events
//	@Produce		json
//	@Param			category	query		string	false	"Only this category"	Enums(task, step, workflow, handler, custom)
//	@Success		200			{object}	EventCatalogResponse
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.event:index"
//	@Router			/events [get]
func (h *eventHandlers) catalog(w http.ResponseWriter, r *http.Request) {
	category := r.URL.Query().Get("category")
	if category != "" && category != string(events.CategoryCustom) && !slices.Contains(events.Categories(), events.Category(category)) {
		WriteProblem(w, r, BadRequest("category must be task, step, workflow, handler or custom"))
		return
	}
	out := EventCatalogResponse{
		Events:              []EventDefinition{},
		EnvelopeSchema:      events.SchemaOf(reflect.TypeOf(events.Envelope{})),
		CustomEvents:        []CustomEventDefinition{},
		CustomPayloadSchema: events.SchemaOf(reflect.TypeOf(events.CustomPayload{})),
	}
	for _, d := range events.Catalog() {
		if category != "" && string(d.Category) != category {
			continue
		}
		out.Events = append(out.Events, EventDefinition{Name: d.Name, Category: string(d.Category), Description: d.Description,
			Transactional: d.Transactional, PayloadSchema: events.SchemaOf(d.PayloadType())})
	}
	if h.registry != nil && (category == "" || category == string(events.CategoryCustom)) {
		out.CustomEvents = h.customEvents(r)
	}
	WriteJSON(w, http.StatusOK, out)
}

// customEvents lists what the live templates declare, by template and step.
func (h *eventHandlers) customEvents(r *http.Request) []CustomEventDefinition {
	out := []CustomEventDefinition{}
	for _, ns := range h.registry.Namespaces() {
		handlers, err := h.registry.Handlers(ns.Name)
		if err != nil {
			continue // the namespace went away meanwhile
		}
		for _, hs := range handlers {
			for _, v := range hs.Versions {
				reg, err := h.registry.Resolve(r.Context(), ns.Name, hs.Name, v)
				if err != nil || reg.Template == nil {
					continue
				}
				t := reg.Template
				add := func(raw json.RawMessage, step string) {
					var list []struct {
						Name        string `json:"name"`
						Description string `json:"description"`
					}
					if json.Unmarshal(raw, &list) != nil {
						return
					}
					for _, e := range list {
						out = append(out, CustomEventDefinition{Name: e.Name, Description: e.Description, Namespace: t.NamespaceName,
							TaskName: t.Name, TaskVersion: t.Version, StepName: step})
					}
				}
				add(t.CustomEvents, "")
				for _, st := range t.StepTemplates {
					add(st.CustomEvents, st.Name)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
