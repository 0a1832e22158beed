package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

// fuzzBodies are the request bodies the API decodes, indexed by the
// fuzzer's choice: task create and annotations, the step actions, the
// remote-worker protocol (claim, heartbeat, complete, fail), webhooks.
var fuzzBodies = []func() any{
	func() any { return &CreateTaskRequest{} },
	func() any { return &ClaimRequest{} },
	func() any { return &HeartbeatRequest{} },
	func() any { return &CompleteRequest{} },
	func() any { return &FailRequest{} },
	func() any { return &UpdateTaskRequest{} },
	func() any { return &UpdateStepRequest{} },
	func() any { return &ResolveStepRequest{} },
	func() any { return &CreateWebhookRequest{} },
}

// FuzzDecodeRequestBody feeds arbitrary bytes and Content-Types to
// DecodeJSON for every request type. It must answer nil or a *Problem in
// the 4xx range with a detail (the client's fault, worded for the client),
// never panic, and never return an error that would become a 500.
func FuzzDecodeRequestBody(f *testing.F) {
	for _, seed := range []struct {
		kind uint8
		ct   string
		body string
	}{
		{0, "application/json", `{"namespace":"shop","name":"checkout","context":{"order_id":42},"tags":["vip"],"priority":5,"run_at":"2025-01-31T08:00:00Z"}`},
		{0, "application/json", `{"name":"x","priority":1e400}`},
		{0, "application/json", `{"name":"x","name":"y","context":null}`},
		{0, "application/json", `{"run_at":"yesterday","tags":[1,2],"context":[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}`},
		{0, "application/json; charset=latin1", `{}`},
		{0, "", "{\"name\":\"\xff\xfe\"}"},
		{0, "application/merge-patch+json", `{"bypass_steps":null,"idempotency_key":"k"}` + " \n{}"},
		{1, "application/json", `{"worker_id":"w1","handlers":["remote:refunds"],"max":4,"wait_seconds":25,"lease_seconds":30}`},
		{1, "application/json", `{"worker_id":"w1","handlers":"remote:refunds","max":-9223372036854775809,"lease_seconds":-1e308}`},
		{2, "application/json", `{"attempt":1,"lease_seconds":30}`},
		{2, "application/json", `{"attempt":"1"}`},
		{3, "application/json", `{"attempt":1,"results":{"ok":true},"events":[{"name":"order.charged","payload":{"value":3}}]}`},
		{3, "application/json", `{"attempt":1,"events":[null,{"name":{}}],"results":`},
		{4, "application/json", `{"attempt":2,"error":{"message":"boom","code":7},"retryable":false,"retry_after_seconds":5}`},
		{4, "application/json", `{"attempt":2,"error":"boom","retryable":"no","retry_after_seconds":"NaN"}`},
		{5, "application/json", `{"reason":"customer called","tags":["a","b"]}`},
		{6, "application/json", `{"retry_limit":5,"inputs":{"a":1}}`},
		{7, "application/json", `{"results":{"a":[1,2,3]}}`},
		{8, "application/json", `{"url":"https://example.com/hook","events":["task.*"],"secret":"s"}`},
	} {
		f.Add(seed.kind, seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, kind uint8, contentType string, body []byte) {
		dst := fuzzBodies[int(kind)%len(fuzzBodies)]()
		req := httptest.NewRequest(http.MethodPost, "/tasker/x", bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		req.Body = http.MaxBytesReader(rec, req.Body, DefaultMaxBodyBytes)
		err := DecodeJSON(req, dst)
		if err == nil {
			// What decoded must encode again: nothing half-built is kept.
			if _, merr := json.Marshal(dst); merr != nil {
				t.Fatalf("decoded %T does not encode: %v", dst, merr)
			}
			return
		}
		var p *Problem
		if !errors.As(err, &p) {
			t.Fatalf("%T: a non-problem error, which the API answers with 500: %v", dst, err)
		}
		if p.Status < 400 || p.Status > 499 || p.Detail == "" {
			t.Fatalf("%T: problem %d %q, want a 4xx with a detail", dst, p.Status, p.Detail)
		}
		// WriteError turns it into the answer; it must be a 4xx document.
		WriteError(rec, req, slog.New(slog.DiscardHandler), err)
		if rec.Code != p.Status || rec.Header().Get("Content-Type") != ContentTypeProblem {
			t.Fatalf("%T: answered %d %q for problem %d", dst, rec.Code, rec.Header().Get("Content-Type"), p.Status)
		}
	})
}

// FuzzDecodeCursor feeds arbitrary cursors to each list's decoder. A
// cursor is refused with a 400 that names the cursor parameter, or
// accepted; an accepted position encodes to a cursor that decodes to the
// same position.
func FuzzDecodeCursor(f *testing.F) {
	at := time.Date(2025, 1, 31, 8, 0, 0, 123000, time.UTC)
	id := uuid.MustParse("0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b")
	fp := queryFingerprint("tasks", "shop")
	f.Add(uint8(0), encodeCursor("tasks", fp, taskCursorKey{ID: id, T: &at}), "shop")
	f.Add(uint8(0), encodeCursor("tasks", fp, taskCursorKey{ID: id, S: "complete"}), "shop")
	f.Add(uint8(0), encodeCursor("tasks", fp, taskCursorKey{ID: id, T: &at}), "other")
	f.Add(uint8(1), encodeCursor("transitions", fp, transitionCursorKey{T: &at, Kind: 1, ID: 42}), "shop")
	f.Add(uint8(1), encodeCursor("transitions", fp, transitionCursorKey{T: &at, Kind: 7, ID: -1}), "shop")
	f.Add(uint8(2), encodeCursor("audit", fp, auditCursorKey{T: at, ID: 9}), "shop")
	f.Add(uint8(2), encodeCursor("tasks", fp, auditCursorKey{T: at, ID: 9}), "shop")
	f.Add(uint8(0), "not-a-cursor", "")
	f.Add(uint8(0), "eyJ2IjoyfQ", "")                                                        // {"v":2}
	f.Add(uint8(1), "eyJ2IjoxLCJsIjoidHJhbnNpdGlvbnMiLCJxIjoieCIsImsiOm51bGx9", "x")         // k: null
	f.Add(uint8(2), "eyJ2IjoxLCJsIjoiYXVkaXQiLCJxIjoieCIsImsiOnsidCI6MSwiaWQiOiIxIn19", "x") // wrong types in k
	lists := []struct {
		name string
		key  func() any
	}{
		{"tasks", func() any { return &taskCursorKey{} }},
		{"transitions", func() any { return &transitionCursorKey{} }},
		{"audit", func() any { return &auditCursorKey{} }},
	}
	f.Fuzz(func(t *testing.T, which uint8, raw, query string) {
		l := lists[int(which)%len(lists)]
		fp := queryFingerprint(l.name, query)
		key := l.key()
		p := decodeCursor(raw, l.name, fp, key)
		if p != nil {
			if p.Status != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Parameter != "cursor" {
				t.Fatalf("refused as %d %+v, want a 400 naming cursor", p.Status, p.Errors)
			}
			return
		}
		again := l.key()
		if p := decodeCursor(encodeCursor(l.name, fp, reflect.ValueOf(key).Elem().Interface()), l.name, fp, again); p != nil {
			t.Fatalf("an accepted position does not survive a round trip: %v", p)
		}
		a, _ := json.Marshal(key)
		b, _ := json.Marshal(again)
		if !bytes.Equal(a, b) {
			t.Fatalf("round trip changed the position: %s then %s", a, b)
		}
	})
}
