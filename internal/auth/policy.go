package auth

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"

	"gopkg.in/yaml.v3"
)

// Policy maps roles to grants.
type Policy struct {
	roles map[string][]Grant
}

// DefaultPolicy holds the built-in roles used without a policy file:
// admin may do everything, viewer may list and show everything (but not
// see sensitive values).
func DefaultPolicy() *Policy {
	p, err := ParsePolicy([]byte(`roles:
  admin: ["*"]
  viewer: ["*:tasker.*:index", "*:tasker.*:show"]
`))
	if err != nil {
		panic("auth: built-in policy: " + err.Error())
	}
	return p
}

// policyFile is the YAML form of a policy.
type policyFile struct {
	Roles map[string][]string `yaml:"roles"`
}

// ParsePolicy reads a policy in YAML:
//
//	roles:
//	  admin: ["*"]
//	  payments_operator: ["payments:tasker.task:*", "payments:tasker.workflow_step:*"]
//
// Unknown keys, resources and actions are errors.
func ParsePolicy(doc []byte) (*Policy, error) {
	var f policyFile
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("auth policy: %w", err)
	}
	if len(f.Roles) == 0 {
		return nil, errors.New("auth policy: no roles")
	}
	p := &Policy{roles: map[string][]Grant{}}
	for role, grants := range f.Roles {
		if role == "" {
			return nil, errors.New("auth policy: a role has no name")
		}
		p.roles[role] = []Grant{}
		for _, s := range grants {
			g, err := ParseGrant(s)
			if err != nil {
				return nil, fmt.Errorf("auth policy: role %q: %w", role, err)
			}
			p.roles[role] = append(p.roles[role], g)
		}
	}
	return p, nil
}

// LoadPolicy reads a policy file.
func LoadPolicy(path string) (*Policy, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth policy: %w", err)
	}
	return ParsePolicy(doc)
}

// Grants returns what the roles grant together; unknown roles grant nothing.
func (p *Policy) Grants(roles []string) []Grant {
	var out []Grant
	for _, r := range roles {
		out = append(out, p.roles[r]...)
	}
	return out
}

// Roles lists the policy's role names, sorted.
func (p *Policy) Roles() []string {
	out := make([]string, 0, len(p.roles))
	for r := range p.roles {
		out = append(out, r)
	}
	sort.Strings(out)
	return slices.Clip(out)
}
