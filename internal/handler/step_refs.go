package handler

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"text/template/parse"
)

// StepReferencer is implemented by the kinds whose handler_config holds
// templates over the step's data (http, subtask).
type StepReferencer interface {
	StepReferences(config json.RawMessage) []string
}

// StepReferences implements StepReferencer for the http kind.
func (*HTTP) StepReferences(config json.RawMessage) []string { return StepReferences(config) }

// StepReferences implements StepReferencer for the subtask kind.
func (*Subtask) StepReferences(config json.RawMessage) []string { return StepReferences(config) }

// StepReferences lists the step names that config's templates read as
// .steps.NAME, sorted and without repeats, so the registry can check at
// registration that each is a parent of the step: an attempt's templates
// see its direct parents' results only, and a reference to any other step
// would otherwise fail every attempt at run time. References inside a
// range or with body are not counted (the dot is something else there), and
// strings that are not valid templates are left to ValidateConfig.
func StepReferences(config json.RawMessage) []string {
	if len(bytes.TrimSpace(config)) == 0 {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	var names []string
	_ = walkStrings(v, "", func(_, s string) error {
		if !strings.Contains(s, "{{") {
			return nil
		}
		if t, err := parseTemplate(s, true); err == nil {
			names = stepFields(t.Root, names)
		}
		return nil
	})
	slices.Sort(names)
	return slices.Compact(names)
}

// stepFields appends the NAME of every .steps.NAME field under n where the
// dot is the step's data.
func stepFields(n parse.Node, names []string) []string {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return names
		}
		for _, c := range n.Nodes {
			names = stepFields(c, names)
		}
	case *parse.ActionNode:
		names = stepFields(n.Pipe, names)
	case *parse.IfNode:
		names = stepFields(n.Pipe, names)
		names = stepFields(n.List, names)
		names = stepFields(n.ElseList, names)
	case *parse.RangeNode:
		names = stepFields(n.Pipe, names) // its body has another dot
	case *parse.WithNode:
		names = stepFields(n.Pipe, names)
		names = stepFields(n.ElseList, names) // else keeps the dot
	case *parse.PipeNode:
		if n == nil {
			return names
		}
		for _, cmd := range n.Cmds {
			for _, a := range cmd.Args {
				names = stepFields(a, names)
			}
		}
	case *parse.ChainNode:
		names = stepFields(n.Node, names)
	case *parse.FieldNode:
		if len(n.Ident) >= 2 && n.Ident[0] == "steps" {
			names = append(names, n.Ident[1])
		}
	}
	return names
}
