package api

import (
	"encoding/json"
	"net/http"
)

// GraphQLService serves the GraphQL endpoint and its playground; it is
// internal/graphql's Handler, which imports this package (hence the
// interface).
type GraphQLService interface {
	// ServeHTTP answers POST /graphql for an authenticated caller.
	ServeHTTP(w http.ResponseWriter, r *http.Request)
	// Playground answers GET /graphql with the playground's page.
	Playground(w http.ResponseWriter, r *http.Request)
	// PlaygroundAsset answers GET /graphql/{file}: the page's script, style
	// sheet and images.
	PlaygroundAsset(w http.ResponseWriter, r *http.Request)
}

// graphqlQuery is the GraphQL endpoint.
//
//	@Summary		Run a GraphQL query or mutation
//	@Description	GraphQL alongside REST (docs/graphql.md): queries tasks (a Relay connection with the list's filters), task, step, handlers and namespaces; mutations createTask, updateTask, cancelTask, retryStep, resolveStep and cancelStep. Each operation needs the permission of its REST twin, scoped by namespace as there (an object outside the caller's scope is NOT_FOUND), and is audited as there. Errors come in GraphQL's format with extensions.code (NOT_FOUND, VALIDATION_FAILED, CONFLICT, FORBIDDEN, UNAUTHENTICATED, …) and extensions.status, the REST twin's status. Queries deeper or costlier than the configured limits are refused before they run. Permission: per operation.
//	@Tags			graphql
//	@Accept			json
//	@Produce		json
//	@Param			request	body		GraphQLRequest	true	"The query, its variables and operation name"
//	@Success		200		{object}	GraphQLResponse	"data and/or errors"
//	@Failure		401		{object}	GraphQLResponse	"No valid bearer token (extensions.code UNAUTHENTICATED)"
//	@Failure		422		{object}	GraphQLResponse	"A query that does not parse, validate, or fit the depth and complexity limits"
//	@Security		BearerAuth
//	@x-permission	"per operation"
//	@Router			/graphql [post]
func graphqlQuery(g GraphQLService) http.HandlerFunc { return g.ServeHTTP }

// graphqlPlayground is the playground page.
//
//	@Summary		GraphQL playground
//	@Description	An interactive GraphQL IDE (GraphQL Playground) served by taskerd itself, with no CDN: write a query, add {"Authorization": "Bearer …"} under HTTP HEADERS, run it against POST /graphql. The page is open; the queries it sends are checked like any other.
//	@Tags			graphql
//	@Produce		html
//	@Success		200	{string}	string	"The playground's HTML page"
//	@Router			/graphql [get]
func graphqlPlayground(g GraphQLService) http.HandlerFunc { return g.Playground }

// GraphQLRequest is the body of POST /graphql.
type GraphQLRequest struct {
	Query         string         `json:"query" example:"{ task(id: \"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b\") { status steps { name status dependencyLevel } } }"`
	Variables     map[string]any `json:"variables,omitempty"`
	OperationName string         `json:"operationName,omitempty"`
}

// GraphQLResponse is GraphQL's answer: data, errors, or both.
type GraphQLResponse struct {
	Data   map[string]any `json:"data,omitempty"`
	Errors []GraphQLError `json:"errors,omitempty"`
}

// GraphQLError is one error of a GraphQL answer.
type GraphQLError struct {
	Message string `json:"message" example:"no such task or step"`
	Path    []any  `json:"path,omitempty"`
	// Extensions carry code (NOT_FOUND, …), status and type (the REST problem type).
	Extensions map[string]any `json:"extensions,omitempty"`
}

// writeGraphQLUnauthenticated answers a GraphQL request without a valid
// token: 401 with the error GraphQL clients read (the REST problem's
// words; the log has the reason).
func writeGraphQLUnauthenticated(w http.ResponseWriter, r *http.Request) {
	p := Unauthorized()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(GraphQLResponse{Errors: []GraphQLError{{
		Message: p.Detail,
		Extensions: map[string]any{"code": "UNAUTHENTICATED", "status": http.StatusUnauthorized, "type": p.Type,
			"request_id": RequestIDFromContext(r.Context())},
	}}})
}
