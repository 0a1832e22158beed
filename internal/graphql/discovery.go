package graphql

import (
	"context"
	"fmt"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/registry"
)

// handlers is GET /handlers/{namespace}: a namespace outside the caller's
// scope is NOT_FOUND, as one without templates is.
func (r *Resolver) handlers(ctx context.Context, namespace string) ([]*registry.HandlerSummary, error) {
	n := &auditNote{perm: auth.HandlerIndex, resourceID: namespace, namespace: namespace}
	s, err := r.scope(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := r.inScope(ctx, s, n); err != nil {
		return nil, err
	}
	hs, err := r.registry.Handlers(namespace)
	if err != nil {
		e := notFound()
		e.Message, e.Err = fmt.Sprintf("namespace %q has no templates", namespace), err
		return nil, e
	}
	out := make([]*registry.HandlerSummary, len(hs))
	for i := range hs {
		out[i] = &hs[i]
	}
	return out, nil
}

// namespaces is GET /handlers, filtered by the caller's scope.
func (r *Resolver) namespaces(ctx context.Context) ([]*registry.NamespaceSummary, error) {
	s, err := r.scope(ctx, &auditNote{perm: auth.HandlerIndex})
	if err != nil {
		return nil, err
	}
	out := []*registry.NamespaceSummary{}
	for _, ns := range r.registry.Namespaces() {
		if s.Contains(ns.Name) {
			out = append(out, &ns)
		}
	}
	return out, nil
}

// paused says whether a namespace (name "") or a template is paused, by
// its own pause or (for a template) its namespace's. The pause table holds
// a handful of rows: one read per field is cheaper than a loader.
func (r *Resolver) paused(ctx context.Context, namespace, name string) (bool, error) {
	ps, err := r.store.Pauses(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range ps {
		if p.Namespace == namespace && (p.Name == "" || p.Name == name) {
			return true, nil
		}
	}
	return false, nil
}
