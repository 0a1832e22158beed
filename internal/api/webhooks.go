package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/webhooks"
)

// webhookHandlers manage webhook subscriptions and show their deliveries.
type webhookHandlers struct {
	webhooks *webhooks.Service
	logger   *slog.Logger
}

// CreateWebhookRequest is the body of POST /tasker/webhooks.
type CreateWebhookRequest struct {
	// URL receives a POST per event.
	URL string `json:"url"`
	// Events are names or patterns: "task.*", "step.failed", "order.*", "*".
	Events []string `json:"events"`
	// Secret keys the X-Tasker-Signature HMAC; absent: one is generated and
	// returned once.
	Secret      string `json:"secret,omitempty"`
	Description string `json:"description,omitempty"`
}

// WebhookResponse is a subscription; Secret only in the answer to its creation.
type WebhookResponse struct {
	WebhookID   string    `json:"webhook_id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	Secret      string    `json:"secret,omitempty"`
}

func webhookJSON(w *store.Webhook) WebhookResponse {
	return WebhookResponse{WebhookID: w.ID.String(), URL: w.URL, Events: w.Events, Description: w.Description, CreatedAt: w.CreatedAt}
}

// create answers POST /tasker/webhooks: 201 with the subscription and its
// secret (shown this once), 422 with every invalid field.
//
//	@Summary		Subscribe a URL to events
//	@Description	Each event whose name matches one of events ("task.*", "step.failed", "order.*", "*") is POSTed to url as JSON, signed: X-Tasker-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>"> keyed with the secret. Deliveries are written to an outbox in the transaction of the state change that caused them, retried with backoff, and at least once: deduplicate by the body's id. The secret is returned only in this answer; absent, one is generated. Permission: tasker.webhook:create.
//	@Tags			webhooks
//	@Accept			json
//	@Produce		json
//	@Param			webhook	body		CreateWebhookRequest	true	"The subscription"
//	@Success		201		{object}	WebhookResponse
//	@Failure		400		{object}	Problem	"Malformed JSON"
//	@Failure		415		{object}	Problem	"Not JSON"
//	@Failure		422		{object}	Problem	"Invalid url, event pattern or secret; unknown field"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.webhook:create"
//	@Router			/webhooks [post]
func (h *webhookHandlers) create(w http.ResponseWriter, r *http.Request) {
	var req CreateWebhookRequest
	if err := DecodeJSON(r, &req); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	hook, err := h.webhooks.Create(r.Context(), webhooks.CreateRequest{URL: req.URL, Events: req.Events, Secret: req.Secret, Description: req.Description})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := webhookJSON(hook)
	out.Secret = hook.Secret
	w.Header().Set("Location", BasePath+"/webhooks/"+hook.ID.String())
	WriteJSON(w, http.StatusCreated, out)
}

// WebhookListResponse is the body of GET /tasker/webhooks.
type WebhookListResponse struct {
	Webhooks []WebhookResponse `json:"webhooks"`
}

// list answers GET /tasker/webhooks.
//
//	@Summary		List webhook subscriptions
//	@Description	The live subscriptions, oldest first, without their secrets. Permission: tasker.webhook:index.
//	@Tags			webhooks
//	@Produce		json
//	@Success		200	{object}	WebhookListResponse
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.webhook:index"
//	@Router			/webhooks [get]
func (h *webhookHandlers) list(w http.ResponseWriter, r *http.Request) {
	list, err := h.webhooks.List(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := WebhookListResponse{Webhooks: make([]WebhookResponse, len(list))}
	for i := range list {
		out.Webhooks[i] = webhookJSON(&list[i])
	}
	WriteJSON(w, http.StatusOK, out)
}

// show answers GET /tasker/webhooks/{webhook_id}.
//
//	@Summary		Show a webhook subscription
//	@Tags			webhooks
//	@Produce		json
//	@Param			webhook_id	path		string	true	"Webhook id"	Format(uuid)
//	@Success		200			{object}	WebhookResponse
//	@Failure		400			{object}	Problem	"Malformed id"
//	@Failure		404			{object}	Problem	"No such webhook"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.webhook:show"
//	@Router			/webhooks/{webhook_id} [get]
func (h *webhookHandlers) show(w http.ResponseWriter, r *http.Request) {
	id, ok := webhookID(w, r)
	if !ok {
		return
	}
	hook, err := h.webhooks.Get(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, webhookJSON(hook))
}

// remove answers DELETE /tasker/webhooks/{id}: 204; pending deliveries are cancelled.
//
//	@Summary		Delete a webhook subscription
//	@Description	No event is delivered to it any more; its pending deliveries are cancelled. Permission: tasker.webhook:destroy.
//	@Tags			webhooks
//	@Param			webhook_id	path	string	true	"Webhook id"	Format(uuid)
//	@Success		204
//	@Failure		400	{object}	Problem	"Malformed id"
//	@Failure		404	{object}	Problem	"No such webhook"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.webhook:destroy"
//	@Router			/webhooks/{webhook_id} [delete]
func (h *webhookHandlers) remove(w http.ResponseWriter, r *http.Request) {
	id, ok := webhookID(w, r)
	if !ok {
		return
	}
	if err := h.webhooks.Delete(r.Context(), id); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DeliveryResponse is one delivery of a webhook's log.
type DeliveryResponse struct {
	DeliveryID string `json:"delivery_id"`
	EventID    string `json:"event_id"`
	Event      string `json:"event"`
	TaskID     string `json:"task_id,omitempty"`
	// Status is pending, delivered, failed (for good) or cancelled (webhook deleted).
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	LastStatusCode int        `json:"last_status_code,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	// AttemptLog lists every attempt: {attempt, status_code, error, duration_ms, replica, at}.
	AttemptLog json.RawMessage `json:"attempt_log" swaggertype:"array,object"`
	// Body is what was (or will be) sent.
	Body json.RawMessage `json:"body" swaggertype:"object"`
}

// DeliveryListResponse is the body of GET /tasker/webhooks/{id}/deliveries.
type DeliveryListResponse struct {
	Deliveries []DeliveryResponse `json:"deliveries"`
	// Next continues the listing (?before=…), when there may be more.
	Next string `json:"next,omitempty"`
}

// Delivery log page sizes.
const (
	defaultDeliveryLimit = 50
	maxDeliveryLimit     = 500
)

// deliveries answers GET /tasker/webhooks/{id}/deliveries[?status=&limit=&before=],
// newest first.
//
//	@Summary		A webhook's delivery log
//	@Description	Its deliveries, newest first, each with every attempt (status code, error, duration, replica) and the body sent. next continues the listing as ?before=. Permission: tasker.webhook:show.
//	@Tags			webhooks
//	@Produce		json
//	@Param			webhook_id	path		string	true	"Webhook id"	Format(uuid)
//	@Param			status		query		string	false	"Only deliveries in this status"	Enums(pending, delivered, failed, cancelled)
//	@Param			limit		query		int		false	"Page size (default 50)"	minimum(1)	maximum(500)
//	@Param			before		query		string	false	"Deliveries older than this one (next of the previous page)"	Format(uuid)
//	@Success		200			{object}	DeliveryListResponse
//	@Failure		400			{object}	Problem	"Malformed id or query parameter"
//	@Failure		404			{object}	Problem	"No such webhook"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.webhook:show"
//	@Router			/webhooks/{webhook_id}/deliveries [get]
func (h *webhookHandlers) deliveries(w http.ResponseWriter, r *http.Request) {
	id, ok := webhookID(w, r)
	if !ok {
		return
	}
	q := store.DeliveryQuery{WebhookID: id, Limit: defaultDeliveryLimit, Status: r.URL.Query().Get("status")}
	switch q.Status {
	case "", "pending", "delivered", "failed", "cancelled":
	default:
		WriteProblem(w, r, BadRequest("status must be pending, delivered, failed or cancelled"))
		return
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeliveryLimit {
			WriteProblem(w, r, BadRequest(fmt.Sprintf("limit must be a number from 1 to %d", maxDeliveryLimit)))
			return
		}
		q.Limit = n
	}
	if v := r.URL.Query().Get("before"); v != "" {
		before, err := uuid.Parse(v)
		if err != nil {
			WriteProblem(w, r, BadRequest("before must be a delivery id"))
			return
		}
		q.Before = before
	}
	list, err := h.webhooks.Deliveries(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := DeliveryListResponse{Deliveries: make([]DeliveryResponse, len(list))}
	for i, d := range list {
		dr := DeliveryResponse{DeliveryID: d.ID.String(), EventID: d.EventID.String(), Event: d.EventName, Status: d.Status,
			Attempts: d.Attempts, LastStatusCode: d.LastStatusCode, LastError: d.LastError, CreatedAt: d.CreatedAt,
			FinishedAt: d.FinishedAt, AttemptLog: d.AttemptLog, Body: d.Body}
		if d.TaskID != uuid.Nil {
			dr.TaskID = d.TaskID.String()
		}
		if d.Status == "pending" {
			next := d.NextAttemptAt
			dr.NextAttemptAt = &next
		}
		out.Deliveries[i] = dr
	}
	if len(list) == q.Limit {
		out.Next = list[len(list)-1].ID.String()
	}
	WriteJSON(w, http.StatusOK, out)
}

func webhookID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, err := uuid.Parse(chi.URLParam(r, "webhook_id"))
	if err != nil {
		WriteProblem(w, r, BadRequest("webhook_id must be a UUID"))
		return uuid.Nil, false
	}
	return id, true
}

func (h *webhookHandlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	var invalid *webhooks.ValidationError
	switch {
	case errors.As(err, &invalid):
		errs := make([]FieldError, len(invalid.Fields))
		for i, f := range invalid.Fields {
			errs[i] = FieldError{Pointer: f.Pointer, Detail: f.Message}
		}
		WriteProblem(w, r, ValidationFailed("the webhook is not valid", errs...))
	case errors.Is(err, webhooks.ErrNotFound):
		WriteProblem(w, r, NotFound(err.Error()))
	default:
		WriteError(w, r, h.logger, err)
	}
}
