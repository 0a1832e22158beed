package graphql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	gql "github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// The codes of extensions.code, one per REST problem type: a client that
// knows urn:taskerd:problem:not-found knows NOT_FOUND. Every error also
// carries extensions.status (the REST twin's HTTP status) and
// extensions.type (the problem type URI).
const (
	CodeBadRequest       = "BAD_REQUEST"
	CodeValidationFailed = "VALIDATION_FAILED"
	CodeUnauthenticated  = "UNAUTHENTICATED"
	CodeForbidden        = "FORBIDDEN"
	CodeNotFound         = "NOT_FOUND"
	CodeConflict         = "CONFLICT"
	CodeUnavailable      = "UNAVAILABLE"
	CodeInternal         = "INTERNAL"
	// CodeQueryTooDeep and CodeQueryTooComplex refuse a query before it
	// runs (GraphQL only: REST has no such limits).
	CodeQueryTooDeep    = "DEPTH_LIMIT_EXCEEDED"
	CodeQueryTooComplex = "COMPLEXITY_LIMIT_EXCEEDED" // gqlgen's own code
)

// problemSlugs are the REST problem types behind the codes.
var problemSlugs = map[string]string{
	CodeBadRequest: "bad-request", CodeValidationFailed: "validation-failed", CodeUnauthenticated: "unauthorized",
	CodeForbidden: "forbidden", CodeNotFound: "not-found", CodeConflict: "conflict", CodeUnavailable: "unavailable",
	CodeInternal: "internal",
}

// Error is a resolver's error as the client sees it.
type Error struct {
	Code string
	// Status is the HTTP status the REST twin answers (and the audit
	// trail records).
	Status  int
	Message string
	// Fields lists what is wrong with the input (VALIDATION_FAILED).
	Fields []engine.FieldError
	// Err is the cause, for the log; never shown.
	Err error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

var errInternal = &Error{Code: CodeInternal, Status: http.StatusInternalServerError,
	Message: "the server failed to handle the request; quote the request_id when reporting it"}

func notFound() *Error {
	return &Error{Code: CodeNotFound, Status: http.StatusNotFound, Message: "no such task or step"}
}

func forbidden(msg string) *Error {
	return &Error{Code: CodeForbidden, Status: http.StatusForbidden, Message: msg}
}

func badRequest(msg string) *Error {
	return &Error{Code: CodeBadRequest, Status: http.StatusBadRequest, Message: msg}
}

func validationFailed(msg string, fields []engine.FieldError) *Error {
	return &Error{Code: CodeValidationFailed, Status: http.StatusUnprocessableEntity, Message: msg, Fields: fields}
}

// translate maps the engine's, store's and registry's errors as the REST
// handlers do (api's taskHandlers.fail); anything else is internal.
func translate(err error) error {
	var e *Error
	var verr *registry.ValidationError
	var state *store.StateError
	var idem *store.IdempotencyConflictError
	var budget *store.RetryBudgetError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case errors.As(err, &verr):
		return validationFailed("the task request is not valid", verr.Errors)
	case errors.As(err, &idem):
		return &Error{Code: CodeConflict, Status: http.StatusConflict, Err: err,
			Message: fmt.Sprintf("idempotency key already used by task %s for a different request", idem.TaskID)}
	case errors.As(err, &state):
		return &Error{Code: CodeConflict, Status: http.StatusConflict, Message: state.Error(), Err: err}
	case errors.As(err, &budget):
		return validationFailed(budget.Error(), []engine.FieldError{{Pointer: "/retry_limit", Message: budget.Error()}})
	case errors.Is(err, store.ErrNotFound), errors.Is(err, registry.ErrNotFound):
		e := notFound()
		e.Err = err
		return e
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Code: CodeUnavailable, Status: http.StatusServiceUnavailable, Message: "the database is unavailable; retry later", Err: err}
	case errors.Is(err, context.Canceled):
		return err
	}
	return &Error{Code: CodeInternal, Status: http.StatusInternalServerError, Message: errInternal.Message, Err: err}
}

// statusOf is the HTTP status the REST twin would answer for err.
func statusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var e *Error
	if errors.As(translate(err), &e) {
		return e.Status
	}
	return http.StatusInternalServerError
}

// presentError shapes every error of a response: ours with their code,
// gqlgen's own (parse, validation, limits) as they are, anything else as
// INTERNAL with the cause in the log only.
func presentError(logger *slog.Logger) gql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		out := gql.DefaultErrorPresenter(ctx, err)
		var e *Error
		if !errors.As(err, &e) {
			if _, ok := out.Extensions["code"]; ok || errors.Is(err, context.Canceled) {
				return out
			}
			e = &Error{Code: CodeInternal, Status: http.StatusInternalServerError, Message: errInternal.Message, Err: err}
		}
		if e.Code == CodeInternal {
			cause := fmt.Sprint(e.Err)
			logger.LogAttrs(ctx, slog.LevelError, "graphql request failed",
				slog.String(api.LogKeyRequestID, api.RequestIDFromContext(ctx)),
				slog.String("path", out.Path.String()), slog.String(api.LogKeyError, cause))
		}
		out.Message = e.Message
		out.Extensions = map[string]any{"code": e.Code, "status": e.Status}
		if slug, ok := problemSlugs[e.Code]; ok {
			out.Extensions["type"] = "urn:taskerd:problem:" + slug
		}
		if len(e.Fields) > 0 {
			fields := make([]map[string]string, 0, len(e.Fields))
			for _, f := range e.Fields {
				fields = append(fields, map[string]string{"pointer": f.Pointer, "detail": f.Message})
			}
			out.Extensions["errors"] = fields
		}
		if id := api.RequestIDFromContext(ctx); id != "" {
			out.Extensions["request_id"] = id
		}
		return out
	}
}
