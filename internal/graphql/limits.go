package graphql

import (
	"context"
	"strings"

	gql "github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// depthLimit refuses an operation whose selections nest deeper than max,
// before anything runs. The complexity limit bounds the breadth; depth
// needs its own bound because self-referencing fields (a step's
// dependsOn, its task, the task's steps…) make cost estimates of deep
// queries too coarse to rely on.
type depthLimit struct{ max int }

var _ interface {
	gql.OperationContextMutator
	gql.HandlerExtension
} = depthLimit{}

func (depthLimit) ExtensionName() string               { return "DepthLimit" }
func (depthLimit) Validate(gql.ExecutableSchema) error { return nil }

func (d depthLimit) MutateOperationContext(_ context.Context, oc *gql.OperationContext) *gqlerror.Error {
	op := oc.Doc.Operations.ForName(oc.OperationName)
	if op == nil {
		return nil // gqlgen reports the missing operation itself
	}
	if depth := selectionDepth(op.SelectionSet, oc.Doc.Fragments, map[string]bool{}); depth > d.max {
		err := gqlerror.Errorf("operation nests %d levels deep, more than the limit of %d", depth, d.max)
		errcode.Set(err, CodeQueryTooDeep)
		return err
	}
	return nil
}

// selectionDepth is the deepest chain of fields in set. Introspection
// fields (__schema, __type) are left out: their depth is bounded by the
// schema, and tools' introspection queries nest deep.
func selectionDepth(set ast.SelectionSet, frags ast.FragmentDefinitionList, visiting map[string]bool) int {
	deepest := 0
	for _, sel := range set {
		d := 0
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") {
				continue
			}
			d = 1 + selectionDepth(s.SelectionSet, frags, visiting)
		case *ast.InlineFragment:
			d = selectionDepth(s.SelectionSet, frags, visiting)
		case *ast.FragmentSpread:
			f := frags.ForName(s.Name)
			if f == nil || visiting[s.Name] {
				continue // undefined or cyclic: validation refuses it
			}
			visiting[s.Name] = true
			d = selectionDepth(f.SelectionSet, frags, visiting)
			delete(visiting, s.Name)
		}
		deepest = max(deepest, d)
	}
	return deepest
}
