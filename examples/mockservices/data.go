package main

import (
	"net/http"
	"sort"
)

// Example 02's fake data warehouse: three sources to extract, an analytics
// service computing metrics and insights, a dashboard and a notifier.

type order struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	TotalCents int64  `json:"total_cents"`
}

var (
	dataOrders = []order{
		{"o1", "u1", "widget", 2, 2500}, {"o2", "u2", "gadget", 1, 4999},
		{"o3", "u1", "gadget", 1, 4999}, {"o4", "u3", "widget", 4, 5000}, {"o5", "u2", "gizmo", 3, 2697},
	}
	dataUsers = []map[string]any{
		{"customer_id": "u1", "name": "Ada", "segment": "gold"},
		{"customer_id": "u2", "name": "Grace", "segment": "silver"},
		{"customer_id": "u3", "name": "Linus", "segment": "bronze"},
	}
	dataProducts = []map[string]any{
		{"sku": "widget", "name": "Widget", "category": "tools"},
		{"sku": "gadget", "name": "Gadget", "category": "electronics"},
		{"sku": "gizmo", "name": "Gizmo", "category": "toys"},
	}
)

type metric struct {
	Key        string `json:"key"`
	Orders     int    `json:"orders"`
	Units      int    `json:"units"`
	TotalCents int64  `json:"total_cents"`
}

// aggregate sums orders by key, largest total first.
func aggregate(orders []order, key func(order) string) []metric {
	by := map[string]*metric{}
	for _, o := range orders {
		m := by[key(o)]
		if m == nil {
			m = &metric{Key: key(o)}
			by[key(o)] = m
		}
		m.Orders++
		m.Units += o.Quantity
		m.TotalCents += o.TotalCents
	}
	out := make([]metric, 0, len(by))
	for _, m := range by {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].TotalCents != out[j].TotalCents {
			return out[i].TotalCents > out[j].TotalCents
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func (s *Services) dataRoutes(mux *http.ServeMux) {
	s.endpoint(mux, "GET /data/orders", "extract_orders", func(w http.ResponseWriter, _ *http.Request) int {
		return writeJSON(w, http.StatusOK, map[string]any{"orders": dataOrders, "count": len(dataOrders)})
	})
	s.endpoint(mux, "GET /data/users", "extract_users", func(w http.ResponseWriter, _ *http.Request) int {
		return writeJSON(w, http.StatusOK, map[string]any{"users": dataUsers, "count": len(dataUsers)})
	})
	s.endpoint(mux, "GET /data/products", "extract_products", func(w http.ResponseWriter, _ *http.Request) int {
		return writeJSON(w, http.StatusOK, map[string]any{"products": dataProducts, "count": len(dataProducts)})
	})
	// The transforms take the extracts as sent by the workflow, so their
	// answers show that the fan-in had all its inputs.
	s.endpoint(mux, "POST /data/metrics/customers", "customer_metrics", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			Orders []order          `json:"orders"`
			Users  []map[string]any `json:"users"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if len(body.Orders) == 0 || len(body.Users) == 0 {
			return writeError(w, http.StatusUnprocessableEntity, "orders and users are required")
		}
		m := aggregate(body.Orders, func(o order) string { return o.CustomerID })
		return writeJSON(w, http.StatusOK, map[string]any{"customers": m, "customer_count": len(body.Users)})
	})
	s.endpoint(mux, "POST /data/metrics/products", "product_metrics", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			Orders   []order          `json:"orders"`
			Products []map[string]any `json:"products"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if len(body.Orders) == 0 || len(body.Products) == 0 {
			return writeError(w, http.StatusUnprocessableEntity, "orders and products are required")
		}
		m := aggregate(body.Orders, func(o order) string { return o.SKU })
		return writeJSON(w, http.StatusOK, map[string]any{"products": m, "product_count": len(body.Products)})
	})
	s.endpoint(mux, "POST /data/insights", "insights", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			Customers []metric `json:"customers"`
			Products  []metric `json:"products"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if len(body.Customers) == 0 || len(body.Products) == 0 {
			return writeError(w, http.StatusUnprocessableEntity, "customers and products are required")
		}
		var revenue int64
		for _, c := range body.Customers {
			revenue += c.TotalCents
		}
		return writeJSON(w, http.StatusOK, map[string]any{
			"top_customer": body.Customers[0].Key, "top_product": body.Products[0].Key, "revenue_cents": revenue})
	})
	s.endpoint(mux, "POST /data/dashboard", "dashboard", func(w http.ResponseWriter, r *http.Request) int {
		var body map[string]any
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		return writeJSON(w, http.StatusOK, map[string]any{"updated": true, "url": "http://dashboards.example/daily", "insights": body})
	})
	s.endpoint(mux, "POST /data/notifications", "notifications", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			Channel string `json:"channel"`
			Text    string `json:"text"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		return writeJSON(w, http.StatusAccepted, map[string]any{"sent": true, "channel": body.Channel, "text": body.Text})
	})
}
