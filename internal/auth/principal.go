package auth

import (
	"context"
	"slices"
)

// Principal is an authenticated caller: who (the token's subject) and what
// its roles grant.
type Principal struct {
	// Subject is the token's sub, recorded as the actor of what it does;
	// "" for the anonymous principal of TASKER_AUTH_MODE=none.
	Subject string
	// Roles are the roles the token carried, known to the policy or not.
	Roles  []string
	grants []Grant
}

// Anonymous is the caller when authentication is off: it may do everything.
func Anonymous() *Principal {
	return &Principal{grants: []Grant{{Scope: Any, Resource: Any, Action: Any}}}
}

// NewPrincipal resolves roles through the policy.
func NewPrincipal(subject string, roles []string, policy *Policy) *Principal {
	return &Principal{Subject: subject, Roles: roles, grants: policy.Grants(roles)}
}

// Scope is where a principal holds one permission: everywhere, or in a
// list of namespaces (or worker queue names).
type Scope struct {
	all    bool
	scopes []string
}

// All says the permission holds in every namespace.
func (s Scope) All() bool { return s.all }

// Empty says the permission holds nowhere.
func (s Scope) Empty() bool { return !s.all && len(s.scopes) == 0 }

// Contains says whether the permission holds in namespace ns.
func (s Scope) Contains(ns string) bool { return s.all || slices.Contains(s.scopes, ns) }

// Namespaces lists where the permission holds, sorted; nil when All.
func (s Scope) Namespaces() []string {
	if s.all {
		return nil
	}
	return s.scopes
}

// FullScope is the scope of every namespace.
func FullScope() Scope { return Scope{all: true} }

// Scope answers where p holds perm. An unknown or malformed permission
// holds nowhere: the caller answers 403, it never panics (one of Tasker's
// bugs).
func (p *Principal) Scope(perm Permission) Scope {
	if p == nil {
		return Scope{}
	}
	resource, action, ok := perm.Split()
	if !ok {
		return Scope{}
	}
	var out Scope
	for _, g := range p.grants {
		if !g.covers(resource, action) {
			continue
		}
		if g.Scope == Any {
			return Scope{all: true}
		}
		if !slices.Contains(out.scopes, g.Scope) {
			out.scopes = append(out.scopes, g.Scope)
		}
	}
	slices.Sort(out.scopes)
	return out
}

// Can says whether p holds perm in namespace ns ("" or "*": everywhere).
func (p *Principal) Can(perm Permission, ns string) bool {
	s := p.Scope(perm)
	if ns == "" || ns == Any {
		return s.All()
	}
	return s.Contains(ns)
}

type principalKey struct{}

// WithPrincipal stores p in ctx.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal WithPrincipal stored, or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
