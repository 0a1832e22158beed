package main

import (
	"fmt"
	"net/http"
)

// shop is example 01's fake e-commerce back end: a catalogue, a payment
// gateway, an inventory, an order service and an email service.
type shop struct {
	prices       map[string]int64 // sku → cents
	stock        map[string]int
	payments     map[string]map[string]any // Idempotency-Key → answer
	reservations map[string]map[string]any
	orders       map[string]map[string]any
	emails       []map[string]any
	nextID       int
}

// Stock starts with gizmo sold out, so an order of gizmos shows the
// out-of-stock failure.
func newShop() *shop {
	return &shop{
		prices:       map[string]int64{"widget": 1250, "gadget": 4999, "gizmo": 899},
		stock:        map[string]int{"widget": 100, "gadget": 100, "gizmo": 0},
		payments:     map[string]map[string]any{},
		reservations: map[string]map[string]any{},
		orders:       map[string]map[string]any{},
	}
}

func (s *shop) id(prefix string) string {
	s.nextID++
	return fmt.Sprintf("%s_%04d", prefix, s.nextID)
}

type lineItem struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

func (s *Services) shopRoutes(mux *http.ServeMux) {
	s.endpoint(mux, "POST /shop/carts/validate", "cart", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			Items []lineItem `json:"items"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if len(body.Items) == 0 {
			return writeError(w, http.StatusUnprocessableEntity, "the cart is empty")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var total int64
		items := []map[string]any{}
		for _, it := range body.Items {
			price, ok := s.shop.prices[it.SKU]
			if !ok || it.Quantity < 1 {
				return writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("unknown sku %q or quantity %d", it.SKU, it.Quantity))
			}
			total += price * int64(it.Quantity)
			items = append(items, map[string]any{"sku": it.SKU, "quantity": it.Quantity, "price_cents": price})
		}
		return writeJSON(w, http.StatusOK, map[string]any{"valid": true, "items": items, "total_cents": total})
	})
	s.endpoint(mux, "POST /shop/payments", "payments", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			OrderID     string `json:"order_id"`
			AmountCents int64  `json:"amount_cents"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if body.AmountCents <= 0 {
			return writeError(w, http.StatusUnprocessableEntity, "amount_cents must be positive")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		key := r.Header.Get("Idempotency-Key")
		if prev, ok := s.shop.payments[key]; ok && key != "" {
			return writeJSON(w, http.StatusOK, prev) // a retry charges once
		}
		p := map[string]any{"payment_id": s.shop.id("pay"), "order_id": body.OrderID, "amount_cents": body.AmountCents, "status": "captured"}
		s.shop.payments[key] = p
		return writeJSON(w, http.StatusCreated, p)
	})
	s.endpoint(mux, "POST /shop/inventory/reservations", "inventory", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			OrderID string     `json:"order_id"`
			Items   []lineItem `json:"items"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		key := r.Header.Get("Idempotency-Key")
		if prev, ok := s.shop.reservations[key]; ok && key != "" {
			return writeJSON(w, http.StatusOK, prev)
		}
		for _, it := range body.Items {
			if s.shop.stock[it.SKU] < it.Quantity {
				// 409 is not retried: the step fails for good.
				return writeJSON(w, http.StatusConflict, map[string]any{
					"error": "out of stock", "sku": it.SKU, "requested": it.Quantity, "available": s.shop.stock[it.SKU]})
			}
		}
		for _, it := range body.Items {
			s.shop.stock[it.SKU] -= it.Quantity
		}
		res := map[string]any{"reservation_id": s.shop.id("res"), "order_id": body.OrderID, "items": body.Items}
		s.shop.reservations[key] = res
		return writeJSON(w, http.StatusCreated, res)
	})
	s.endpoint(mux, "POST /shop/orders", "orders", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			OrderID       string `json:"order_id"`
			PaymentID     string `json:"payment_id"`
			ReservationID string `json:"reservation_id"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		key := r.Header.Get("Idempotency-Key")
		if prev, ok := s.shop.orders[key]; ok && key != "" {
			return writeJSON(w, http.StatusOK, prev)
		}
		o := map[string]any{"order_id": body.OrderID, "order_number": s.shop.id("ORD"), "payment_id": body.PaymentID,
			"reservation_id": body.ReservationID, "status": "placed"}
		s.shop.orders[key] = o
		return writeJSON(w, http.StatusCreated, o)
	})
	s.endpoint(mux, "POST /shop/emails", "emails", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			To          string `json:"to"`
			Template    string `json:"template"`
			OrderNumber string `json:"order_number"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if body.To == "" {
			return writeError(w, http.StatusUnprocessableEntity, "to is required")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		m := map[string]any{"message_id": s.shop.id("msg"), "to": body.To, "template": body.Template, "order_number": body.OrderNumber}
		s.shop.emails = append(s.shop.emails, m)
		return writeJSON(w, http.StatusAccepted, m)
	})
	// Not fake APIs but the shop's back office: stock levels and the sent
	// emails, for the README and the tests.
	mux.HandleFunc("GET /shop/stock", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, http.StatusOK, s.shop.stock)
	})
	mux.HandleFunc("PUT /shop/stock/{sku}", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Quantity int `json:"quantity"`
		}
		if _, ok := decode(w, r, &body); !ok {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.shop.stock[r.PathValue("sku")] = body.Quantity
		writeJSON(w, http.StatusOK, map[string]any{"sku": r.PathValue("sku"), "quantity": body.Quantity})
	})
	mux.HandleFunc("GET /shop/emails", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, http.StatusOK, append([]map[string]any{}, s.shop.emails...))
	})
}
