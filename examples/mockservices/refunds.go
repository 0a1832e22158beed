package main

import (
	"fmt"
	"net/http"
	"strings"
)

// refunds is example 04's fake support desk (customer success's) and
// payment gateway and ledger (the payments team's).
type refunds struct {
	captured map[string]int64          // payment id → cents captured
	refunded map[string]int64          // payment id → cents refunded
	byKey    map[string]map[string]any // Idempotency-Key → refund or ledger entry
	notes    map[string][]string       // ticket → notes
	emails   []map[string]any
	next     int
}

func newRefunds() *refunds {
	return &refunds{captured: map[string]int64{}, refunded: map[string]int64{}, byKey: map[string]map[string]any{}, notes: map[string][]string{}}
}

func (f *refunds) id(prefix string) string {
	f.next++
	return fmt.Sprintf("%s_%04d", prefix, f.next)
}

// capturedCents is what a payment captured: every ticket's payment took
// 500.00, so a larger refund is refused as ineligible.
func (f *refunds) capturedCents(paymentID string) int64 {
	if c, ok := f.captured[paymentID]; ok {
		return c
	}
	return 50_000
}

func (s *Services) refundRoutes(mux *http.ServeMux) {
	s.endpoint(mux, "POST /support/tickets/{ticket}/validate", "tickets", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			AmountCents int64 `json:"amount_cents"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		ticket := r.PathValue("ticket")
		if !strings.HasPrefix(ticket, "T") {
			return writeError(w, http.StatusNotFound, fmt.Sprintf("no ticket %q", ticket))
		}
		// Each ticket T<n> is about the payment pay_T<n>.
		return writeJSON(w, http.StatusOK, map[string]any{"ticket_id": ticket, "payment_id": "pay_" + ticket, "amount_cents": body.AmountCents})
	})
	s.endpoint(mux, "POST /support/tickets/{ticket}/notes", "ticket_notes", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			Note string `json:"note"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		ticket := r.PathValue("ticket")
		s.refunds.notes[ticket] = append(s.refunds.notes[ticket], body.Note)
		return writeJSON(w, http.StatusCreated, map[string]any{"ticket_id": ticket, "notes": len(s.refunds.notes[ticket]), "status": "resolved"})
	})
	s.endpoint(mux, "POST /gateway/refunds/eligibility", "refund_eligibility", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			PaymentID   string `json:"payment_id"`
			AmountCents int64  `json:"amount_cents"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		left := s.refunds.capturedCents(body.PaymentID) - s.refunds.refunded[body.PaymentID]
		if body.AmountCents <= 0 || body.AmountCents > left {
			// 422 is not retried: the step fails for good.
			return writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
				"error": "not refundable", "payment_id": body.PaymentID, "requested_cents": body.AmountCents, "refundable_cents": left})
		}
		return writeJSON(w, http.StatusOK, map[string]any{"eligible": true, "payment_id": body.PaymentID, "refundable_cents": left})
	})
	s.endpoint(mux, "POST /gateway/refunds", "gateway_refunds", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			PaymentID   string `json:"payment_id"`
			AmountCents int64  `json:"amount_cents"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		key := r.Header.Get("Idempotency-Key")
		if prev, ok := s.refunds.byKey[key]; ok && key != "" {
			return writeJSON(w, http.StatusOK, prev) // a retry refunds once
		}
		s.refunds.refunded[body.PaymentID] += body.AmountCents
		re := map[string]any{"refund_id": s.refunds.id("re"), "payment_id": body.PaymentID, "amount_cents": body.AmountCents, "status": "succeeded"}
		s.refunds.byKey[key] = re
		return writeJSON(w, http.StatusCreated, re)
	})
	s.endpoint(mux, "POST /ledger/refunds", "ledger", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			RefundID    string `json:"refund_id"`
			AmountCents int64  `json:"amount_cents"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		key := "ledger\x00" + r.Header.Get("Idempotency-Key")
		if prev, ok := s.refunds.byKey[key]; ok {
			return writeJSON(w, http.StatusOK, prev)
		}
		e := map[string]any{"entry_id": s.refunds.id("led"), "refund_id": body.RefundID, "amount_cents": -body.AmountCents}
		s.refunds.byKey[key] = e
		return writeJSON(w, http.StatusCreated, e)
	})
	s.endpoint(mux, "POST /notifications/refunds", "refund_emails", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			PaymentID string `json:"payment_id"`
			RefundID  string `json:"refund_id"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		m := map[string]any{"message_id": s.refunds.id("msg"), "payment_id": body.PaymentID, "refund_id": body.RefundID}
		s.refunds.emails = append(s.refunds.emails, m)
		return writeJSON(w, http.StatusAccepted, m)
	})
	// The back office: what each ticket's notes say, for the README and tests.
	mux.HandleFunc("GET /support/tickets/{ticket}/notes", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, http.StatusOK, append([]string{}, s.refunds.notes[r.PathValue("ticket")]...))
	})
}
