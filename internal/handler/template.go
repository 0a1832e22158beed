package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"text/template"
	"text/template/parse"
)

// Templates in handler_config (the http kind's url, headers, query and
// body; the subtask kind's context) are Go text/template strings over the
// step's data:
//
//	.context       the task's context
//	.steps.NAME.results  a parent step's results
//	.inputs        the step's inputs
//	.attempt       the attempt number, from 1
//	.task_id .step_id .step_name .namespace .task_name .task_version
//
// A missing key is an error, not an empty string. In a JSON value (a body,
// a context) every string is a template, and a string that is exactly one
// action ("{{ .context.amount }}") keeps the JSON type of its value.

// Names of the functions templates may call, besides text/template's own.
const (
	funcJSON   = "json"
	funcSecret = "secret"
	// Added by the URL escaper, not written by authors.
	funcEscapePath  = "taskerd_escape_path"
	funcEscapeQuery = "taskerd_escape_query"
	funcKeep        = "taskerd_keep"
)

// secretNamePattern is what a secret's name must look like: it becomes part
// of an environment variable's name.
var secretNamePattern = regexp.MustCompile(`^[A-Z0-9]+(_[A-Z0-9]+)*$`)

// SecretPrefix starts the environment variables that hold secrets.
const SecretPrefix = "TASKER_SECRET_"

// SecretVariable is the environment variable that holds secret name for
// templates of namespace: TASKER_SECRET_<NAMESPACE>_<NAME>, upper-cased,
// with each underscore of the namespace doubled (customer_success →
// CUSTOMER__SUCCESS) so that no namespace can reach another's secrets: "a"
// asking for B_C reads TASKER_SECRET_A_B_C, namespace "a_b" asking for C
// reads TASKER_SECRET_A__B_C. Secret names are upper-case words joined by
// single underscores.
func SecretVariable(namespace, name string) string {
	ns := strings.ReplaceAll(strings.ToUpper(namespace), "_", "__")
	return SecretPrefix + ns + "_" + name
}

// renderEnv renders one attempt's templates.
type renderEnv struct {
	data map[string]any
	// secret resolves a secret's value; nil where secrets are not allowed.
	secret func(name string) (string, error)
	// used collects the secret values read, so they can be redacted from
	// errors and results.
	used []string
}

// stepData is what templates see of a step.
func stepData(step Step) (map[string]any, error) {
	decode := func(what string, raw json.RawMessage) (any, error) {
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil, nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", what, err)
		}
		return v, nil
	}
	ctxDoc, err := decode("the task context", step.Context)
	if err != nil {
		return nil, err
	}
	if ctxDoc == nil {
		ctxDoc = map[string]any{}
	}
	inputs, err := decode("the step's inputs", step.Inputs)
	if err != nil {
		return nil, err
	}
	steps := make(map[string]any, len(step.Parents))
	for name, raw := range step.Parents {
		results, err := decode("the results of step "+name, raw)
		if err != nil {
			return nil, err
		}
		steps[name] = map[string]any{"results": results}
	}
	return map[string]any{
		"context": ctxDoc, "steps": steps, "inputs": inputs, "attempt": step.Attempt,
		"task_id": step.TaskID.String(), "step_id": step.StepID.String(), "step_name": step.StepName,
		"namespace": step.Namespace, "task_name": step.TaskName, "task_version": step.TaskVersion,
	}, nil
}

// envSecrets resolves secrets of namespace from the environment.
func envSecrets(namespace string, lookup func(string) (string, bool)) func(string) (string, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return func(name string) (string, error) {
		if !secretNamePattern.MatchString(name) {
			return "", fmt.Errorf("secret name %q must be upper-case words joined by underscores", name)
		}
		variable := SecretVariable(namespace, name)
		v, ok := lookup(variable)
		if !ok || v == "" {
			return "", fmt.Errorf("secret %s is not set: the replica has no %s", name, variable)
		}
		return v, nil
	}
}

func (e *renderEnv) funcs() template.FuncMap {
	return template.FuncMap{
		funcJSON: func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		funcSecret: func(name string) (string, error) {
			if e.secret == nil {
				return "", errors.New("secrets are not available here")
			}
			v, err := e.secret(name)
			if err == nil {
				e.used = append(e.used, v)
			}
			return v, err
		},
		funcEscapePath:  func(v any) string { return url.PathEscape(printable(v)) },
		funcEscapeQuery: func(v any) string { return url.QueryEscape(printable(v)) },
		funcKeep:        func(v any) string { return "" },
	}
}

// printable is how an interpolated value reads in a URL.
func printable(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// parseTemplate parses text and checks what it may call: secret only where
// allowSecret, and only with a literal name; no define, block or template.
func parseTemplate(text string, allowSecret bool) (*template.Template, error) {
	funcs := (&renderEnv{}).funcs()
	if !allowSecret {
		delete(funcs, funcSecret)
	}
	t, err := template.New("t").Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "template: "))
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("define and block are not allowed")
	}
	if err := checkNodes(t.Root); err != nil {
		return nil, err
	}
	return t, nil
}

// checkNodes walks a parse tree for what parseTemplate refuses.
func checkNodes(n parse.Node) error {
	switch n := n.(type) {
	case nil:
		return nil
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNodes(c); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		return checkNodes(n.Pipe)
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.RangeNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	case *parse.TemplateNode:
		return errors.New("{{template}} is not allowed")
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, cmd := range n.Cmds {
			if err := checkCommand(cmd); err != nil {
				return err
			}
		}
	case *parse.ChainNode:
		return checkNodes(n.Node)
	}
	return nil
}

func checkBranch(b *parse.BranchNode) error {
	if err := checkNodes(b.Pipe); err != nil {
		return err
	}
	if err := checkNodes(b.List); err != nil {
		return err
	}
	return checkNodes(b.ElseList)
}

func checkCommand(cmd *parse.CommandNode) error {
	if len(cmd.Args) > 0 {
		if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok {
			switch id.Ident {
			case funcSecret:
				lit, ok := argString(cmd.Args)
				if !ok {
					return errors.New(`secret takes one literal name, e.g. {{ secret "API_TOKEN" }}`)
				}
				if !secretNamePattern.MatchString(lit) {
					return fmt.Errorf("secret name %q must be upper-case words joined by underscores, e.g. API_TOKEN", lit)
				}
			case funcEscapePath, funcEscapeQuery, funcKeep:
				return fmt.Errorf("%s is reserved", id.Ident)
			}
		}
	}
	for _, a := range cmd.Args {
		if err := checkNodes(a); err != nil {
			return err
		}
	}
	return nil
}

func argString(args []parse.Node) (string, bool) {
	if len(args) != 2 {
		return "", false
	}
	s, ok := args[1].(*parse.StringNode)
	if !ok {
		return "", false
	}
	return s.Text, true
}

// validateJSONTemplate checks every string of a JSON value as a template.
func validateJSONTemplate(raw json.RawMessage, allowSecret bool) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	return walkStrings(v, "", func(ptr, s string) error {
		if _, err := parseTemplate(s, allowSecret); err != nil {
			return fmt.Errorf("template at %s: %w", orRoot(ptr), err)
		}
		return nil
	})
}

func orRoot(ptr string) string {
	if ptr == "" {
		return "/"
	}
	return ptr
}

func walkStrings(v any, ptr string, fn func(ptr, s string) error) error {
	switch v := v.(type) {
	case string:
		return fn(ptr, v)
	case map[string]any:
		for k, c := range v {
			if err := walkStrings(c, ptr+"/"+strings.NewReplacer("~", "~0", "/", "~1").Replace(k), fn); err != nil {
				return err
			}
		}
	case []any:
		for i, c := range v {
			if err := walkStrings(c, fmt.Sprintf("%s/%d", ptr, i), fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// renderString renders a string template.
func (e *renderEnv) renderString(text string) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	t, err := e.parse(text)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, e.data); err != nil {
		return "", execError(err)
	}
	return buf.String(), nil
}

func (e *renderEnv) parse(text string) (*template.Template, error) {
	t, err := parseTemplate(text, e.secret != nil)
	if err != nil {
		return nil, err
	}
	return t.Funcs(e.funcs()), nil
}

// execError drops text/template's "template: t:1:2: executing "t" at <…>:"
// prefix down to the position and the cause.
func execError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "template: ")
	if i := strings.Index(msg, `executing "t" at `); i >= 0 {
		msg = msg[:i] + msg[i+len(`executing "t" at `):]
	}
	return errors.New(msg)
}

// renderJSON renders every string of a JSON value; a string that is one
// action keeps its value's JSON type.
func (e *renderEnv) renderJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	out, err := e.renderValue(v, "")
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

func (e *renderEnv) renderValue(v any, ptr string) (any, error) {
	switch v := v.(type) {
	case string:
		out, err := e.renderTyped(v)
		if err != nil {
			return nil, fmt.Errorf("at %s: %w", orRoot(ptr), err)
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, c := range v {
			r, err := e.renderValue(c, ptr+"/"+k)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, c := range v {
			r, err := e.renderValue(c, fmt.Sprintf("%s/%d", ptr, i))
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// renderTyped renders a string template; one lone action yields its value.
func (e *renderEnv) renderTyped(text string) (any, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	t, err := e.parse(text)
	if err != nil {
		return nil, err
	}
	nodes := t.Root.Nodes
	action, lone := nodes[0].(*parse.ActionNode)
	if len(nodes) != 1 || !lone || len(action.Pipe.Decl) > 0 {
		var buf bytes.Buffer
		if err := t.Execute(&buf, e.data); err != nil {
			return nil, execError(err)
		}
		return buf.String(), nil
	}
	var kept any
	action.Pipe.Cmds = append(action.Pipe.Cmds, call(funcKeep, action.Pos))
	t.Funcs(template.FuncMap{funcKeep: func(v any) string { kept = v; return "" }})
	if err := t.Execute(&bytes.Buffer{}, e.data); err != nil {
		return nil, execError(err)
	}
	return kept, nil
}

// call is a command node calling a function with the pipeline's value.
func call(name string, pos parse.Pos) *parse.CommandNode {
	return &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos,
		Args: []parse.Node{parse.NewIdentifier(name).SetPos(pos)}}
}

// urlPrefix is what a URL template must write out: the scheme and the host,
// ended by a path, query or fragment before any action, so interpolated
// values can never choose where a request goes.
var urlPrefix = regexp.MustCompile(`^https?://[^/?#\s{}]+`)

// validateURLTemplate checks a URL template: it parses, and its scheme and
// host are literal.
func validateURLTemplate(text string) error {
	t, err := parseTemplate(text, true)
	if err != nil {
		return err
	}
	nodes := t.Root.Nodes
	first, ok := nodes[0].(*parse.TextNode)
	if !ok {
		return errors.New("must start with http:// or https:// and a host, written out (no {{ }} in the scheme or host)")
	}
	head := string(first.Text)
	m := urlPrefix.FindString(head)
	if m == "" {
		return fmt.Errorf("must start with http:// or https:// and a host, got %q", head)
	}
	if rest := head[len(m):]; rest == "" && len(nodes) > 1 {
		return errors.New("the host must be written out and followed by /, ? or # before any {{ }}")
	}
	if u, err := url.Parse(m); err != nil || u.Hostname() == "" {
		return fmt.Errorf("%q is not a valid scheme and host", m)
	}
	return nil
}

// renderURL renders a URL template with every interpolated value escaped:
// as a path segment before the query, as a query value after "?". A value
// can therefore neither add path segments nor query parameters.
func (e *renderEnv) renderURL(text string) (string, error) {
	t, err := e.parse(text)
	if err != nil {
		return "", err
	}
	escapeActions(t.Root, new(bool))
	var buf bytes.Buffer
	if err := t.Execute(&buf, e.data); err != nil {
		return "", execError(err)
	}
	return buf.String(), nil
}

// escapeActions appends an escaping function to each printing action,
// choosing path or query escaping by whether a "?" was written before it.
func escapeActions(n parse.Node, inQuery *bool) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			escapeActions(c, inQuery)
		}
	case *parse.TextNode:
		if bytes.ContainsAny(n.Text, "?#") {
			*inQuery = true
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 {
			return // an assignment prints nothing
		}
		name := funcEscapePath
		if *inQuery {
			name = funcEscapeQuery
		}
		n.Pipe.Cmds = append(n.Pipe.Cmds, call(name, n.Pos))
	case *parse.IfNode:
		escapeActions(n.List, inQuery)
		escapeActions(n.ElseList, inQuery)
	case *parse.RangeNode:
		escapeActions(n.List, inQuery)
		escapeActions(n.ElseList, inQuery)
	case *parse.WithNode:
		escapeActions(n.List, inQuery)
		escapeActions(n.ElseList, inQuery)
	}
}
