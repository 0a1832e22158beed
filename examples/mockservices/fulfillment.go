package main

import (
	"fmt"
	"net/http"
)

// fulfillment is example 05's fake order back end: validation, a payment
// service, a warehouse, a carrier and an email service. The payment
// service and the carrier report business events in their answers
// (events: [{name, payload}]), which the template's http steps emit
// through events_field.
type fulfillment struct {
	payments  map[string]map[string]any // Idempotency-Key → answer
	picks     map[string]map[string]any
	shipments map[string]map[string]any
	emails    []map[string]any
	next      int
}

func newFulfillment() *fulfillment {
	return &fulfillment{payments: map[string]map[string]any{}, picks: map[string]map[string]any{}, shipments: map[string]map[string]any{}}
}

func (f *fulfillment) id(prefix string) string {
	f.next++
	return fmt.Sprintf("%s_%04d", prefix, f.next)
}

// once answers a repeated Idempotency-Key with the first answer, so a
// retried step is charged, picked or shipped once.
func once(w http.ResponseWriter, r *http.Request, seen map[string]map[string]any, build func() map[string]any) int {
	key := r.Header.Get("Idempotency-Key")
	if prev, ok := seen[key]; ok && key != "" {
		return writeJSON(w, http.StatusOK, prev)
	}
	v := build()
	seen[key] = v
	return writeJSON(w, http.StatusCreated, v)
}

func (s *Services) fulfillmentRoutes(mux *http.ServeMux) {
	s.endpoint(mux, "POST /fulfillment/orders/validate", "order_validation", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			OrderID string     `json:"order_id"`
			Items   []lineItem `json:"items"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if len(body.Items) == 0 {
			return writeError(w, http.StatusUnprocessableEntity, "the order has no items")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var total int64
		count := 0
		for _, it := range body.Items {
			price, ok := s.shop.prices[it.SKU] // the shop's catalogue (example 01)
			if !ok || it.Quantity < 1 {
				return writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("unknown sku %q or quantity %d", it.SKU, it.Quantity))
			}
			total += price * int64(it.Quantity)
			count += it.Quantity
		}
		return writeJSON(w, http.StatusOK, map[string]any{"order_id": body.OrderID, "total_cents": total, "item_count": count})
	})
	s.endpoint(mux, "POST /fulfillment/payments", "order_payments", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			OrderID     string `json:"order_id"`
			AmountCents int64  `json:"amount_cents"`
			Currency    string `json:"currency"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if body.AmountCents <= 0 {
			return writeError(w, http.StatusUnprocessableEntity, "amount_cents must be positive")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return once(w, r, s.orders.payments, func() map[string]any {
			return map[string]any{
				"payment_id": s.orders.id("pay"), "order_id": body.OrderID, "amount_cents": body.AmountCents, "status": "captured",
				// The revenue, in currency units: its value feeds the
				// tasker_custom_event_value histogram.
				"events": []any{map[string]any{"name": "order.revenue", "payload": map[string]any{
					"value": float64(body.AmountCents) / 100, "currency": body.Currency, "order_id": body.OrderID}}},
			}
		})
	})
	s.endpoint(mux, "POST /fulfillment/warehouse/picks", "warehouse", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			OrderID   string `json:"order_id"`
			ItemCount int    `json:"item_count"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return once(w, r, s.orders.picks, func() map[string]any {
			return map[string]any{"pick_id": s.orders.id("pick"), "order_id": body.OrderID, "parcels": (body.ItemCount + 4) / 5}
		})
	})
	s.endpoint(mux, "POST /fulfillment/shipments", "shipments", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			OrderID string `json:"order_id"`
			Parcels int    `json:"parcels"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return once(w, r, s.orders.shipments, func() map[string]any {
			tracking := s.orders.id("TRK")
			return map[string]any{
				"tracking_number": tracking, "order_id": body.OrderID, "carrier": "parcelco",
				"events": []any{map[string]any{"name": "order.shipped", "payload": map[string]any{
					"value": body.Parcels, "carrier": "parcelco", "order_id": body.OrderID}}},
			}
		})
	})
	s.endpoint(mux, "POST /fulfillment/emails", "order_emails", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			To             string `json:"to"`
			OrderID        string `json:"order_id"`
			TrackingNumber string `json:"tracking_number"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if body.To == "" {
			return writeError(w, http.StatusUnprocessableEntity, "to is required")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		m := map[string]any{"message_id": s.orders.id("msg"), "to": body.To, "order_id": body.OrderID, "tracking_number": body.TrackingNumber}
		s.orders.emails = append(s.orders.emails, m)
		return writeJSON(w, http.StatusAccepted, m)
	})
}

// hookRoutes is a webhook receiver for taskerd's deliveries (example 05's
// README subscribes it): POST /hooks keeps each delivery, GET /hooks lists
// them with their event and correlation id headers.
func (s *Services) hookRoutes(mux *http.ServeMux) {
	s.endpoint(mux, "POST /hooks", "hooks", func(w http.ResponseWriter, r *http.Request) int {
		var body map[string]any
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.hooks = append(s.hooks, map[string]any{
			"x_tasker_event": r.Header.Get("X-Tasker-Event"), "x_correlation_id": r.Header.Get("X-Correlation-ID"), "body": body})
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	})
	mux.HandleFunc("GET /hooks", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, http.StatusOK, append([]map[string]any{}, s.hooks...))
	})
}
