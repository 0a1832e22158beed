package main

import (
	"fmt"
	"net/http"
)

// users is example 03's fake user, billing and notification services.
type users struct {
	accounts map[string]map[string]any // user id → account
	byKey    map[string]string         // Idempotency-Key → user id
	billing  map[string]map[string]any // user id → billing profile
	welcomes map[string]int            // user id → welcome messages sent
	next     int
}

func newUsers() *users {
	return &users{accounts: map[string]map[string]any{}, byKey: map[string]string{},
		billing: map[string]map[string]any{}, welcomes: map[string]int{}}
}

func (s *Services) userRoutes(mux *http.ServeMux) {
	s.endpoint(mux, "POST /users", "users", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			Email string `json:"email"`
			Name  string `json:"name"`
			Plan  string `json:"plan"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		if body.Email == "" {
			return writeError(w, http.StatusUnprocessableEntity, "email is required")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		u := s.users
		if id, ok := u.byKey[r.Header.Get("Idempotency-Key")]; ok {
			return writeJSON(w, http.StatusOK, u.accounts[id])
		}
		u.next++
		id := fmt.Sprintf("usr_%04d", u.next)
		acct := map[string]any{"user_id": id, "email": body.Email, "name": body.Name, "plan": body.Plan, "status": "pending"}
		u.accounts[id], u.byKey[r.Header.Get("Idempotency-Key")] = acct, id
		return writeJSON(w, http.StatusCreated, acct)
	})
	s.endpoint(mux, "PATCH /users/{id}", "user_status", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			Status string `json:"status"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		acct, ok := s.users.accounts[r.PathValue("id")]
		if !ok {
			return writeError(w, http.StatusNotFound, "no such user")
		}
		acct["status"] = body.Status
		return writeJSON(w, http.StatusOK, acct)
	})
	s.endpoint(mux, "GET /users/{id}", "user", func(w http.ResponseWriter, r *http.Request) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		acct, ok := s.users.accounts[r.PathValue("id")]
		if !ok {
			return writeError(w, http.StatusNotFound, "no such user")
		}
		return writeJSON(w, http.StatusOK, acct)
	})
	s.endpoint(mux, "POST /billing/profiles", "billing", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			UserID string `json:"user_id"`
			Plan   string `json:"plan"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.users.accounts[body.UserID]; !ok {
			return writeError(w, http.StatusNotFound, "no such user")
		}
		if p, ok := s.users.billing[body.UserID]; ok {
			return writeJSON(w, http.StatusOK, p)
		}
		p := map[string]any{"billing_id": "bill_" + body.UserID, "user_id": body.UserID, "plan": body.Plan}
		s.users.billing[body.UserID] = p
		return writeJSON(w, http.StatusCreated, p)
	})
	s.endpoint(mux, "POST /notifications/welcome", "welcome", func(w http.ResponseWriter, r *http.Request) int {
		var body struct {
			UserID string `json:"user_id"`
			Email  string `json:"email"`
		}
		if code, ok := decode(w, r, &body); !ok {
			return code
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.users.welcomes[body.UserID] += 3
		return writeJSON(w, http.StatusAccepted, map[string]any{"user_id": body.UserID, "messages_scheduled": 3})
	})
}
