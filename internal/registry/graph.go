package registry

import (
	"encoding/json"
	"slices"
	"strings"
)

// Graph is a template's step DAG as discovery shows it. Edges come from
// depends_on_step and depends_on_steps alike (Tasker's discovery dropped
// the latter).
type Graph struct {
	Nodes []GraphNode `json:"nodes"`
	Edges []GraphEdge `json:"edges"`
	// Levels groups steps by depth: level 0 holds the roots, and each step
	// sits one level below its deepest parent, so the steps of one level
	// can run in parallel once the levels above are done.
	Levels [][]string `json:"levels"`
	// ExecutionOrder is the levels flattened: a topological order.
	ExecutionOrder []string `json:"execution_order"`
	RootSteps      []string `json:"root_steps"`
	LeafSteps      []string `json:"leaf_steps"`
	// Mermaid is the graph as Mermaid "graph TD" text.
	Mermaid string `json:"mermaid"`
}

// GraphNode is one step.
type GraphNode struct {
	ID            string          `json:"id"`
	Name          string          `json:"name"`
	Type          string          `json:"type"` // "step", as in Tasker
	Handler       string          `json:"handler"`
	HandlerClass  string          `json:"handler_class,omitempty"`
	Configuration json.RawMessage `json:"configuration"`
	Level         int             `json:"level"`
}

// GraphEdge runs from a parent step to the step that depends on it.
type GraphEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
	Type string `json:"type"` // "dependency", as in Tasker
}

// DependencyGraph computes t's graph. t must be valid (acyclic).
func DependencyGraph(t *Template) Graph {
	index := make(map[string]int, len(t.StepTemplates))
	for i, s := range t.StepTemplates {
		index[s.Name] = i
	}
	parents := make([][]int, len(t.StepTemplates))
	hasChild := make([]bool, len(t.StepTemplates))
	g := Graph{
		Nodes:          []GraphNode{},
		Edges:          []GraphEdge{},
		Levels:         [][]string{},
		ExecutionOrder: []string{},
		RootSteps:      []string{},
		LeafSteps:      []string{},
	}
	for i, s := range t.StepTemplates {
		for _, dep := range s.DependsOn {
			if p, ok := index[dep]; ok {
				parents[i] = append(parents[i], p)
				hasChild[p] = true
				g.Edges = append(g.Edges, GraphEdge{From: dep, To: s.Name, Type: "dependency"})
			}
		}
	}
	levels := levelsOf(parents)
	for i, s := range t.StepTemplates {
		cfg := s.HandlerConfig
		if len(cfg) == 0 {
			cfg = json.RawMessage("{}")
		}
		g.Nodes = append(g.Nodes, GraphNode{
			ID: s.Name, Name: s.Name, Type: "step", Handler: s.Handler, HandlerClass: s.HandlerClass,
			Configuration: cfg, Level: levels[i],
		})
		for len(g.Levels) <= levels[i] {
			g.Levels = append(g.Levels, []string{})
		}
		g.Levels[levels[i]] = append(g.Levels[levels[i]], s.Name)
		if len(parents[i]) == 0 {
			g.RootSteps = append(g.RootSteps, s.Name)
		}
		if !hasChild[i] {
			g.LeafSteps = append(g.LeafSteps, s.Name)
		}
	}
	for _, l := range g.Levels {
		g.ExecutionOrder = append(g.ExecutionOrder, l...)
	}
	g.Mermaid = mermaid(t.StepTemplates, g.Edges)
	return g
}

// levelsOf gives each node its depth: 0 for roots, else one more than its
// deepest parent. Nodes on a cycle (never in a valid template) get -1.
func levelsOf(parents [][]int) []int {
	level := make([]int, len(parents))
	state := make([]int8, len(parents)) // 0 new, 1 visiting, 2 done
	var visit func(i int) int
	visit = func(i int) int {
		switch state[i] {
		case 1:
			return -1
		case 2:
			return level[i]
		}
		state[i] = 1
		l := 0
		for _, p := range parents[i] {
			pl := visit(p)
			if pl < 0 {
				l = -1
				break
			}
			l = max(l, pl+1)
		}
		state[i], level[i] = 2, l
		return l
	}
	for i := range parents {
		visit(i)
	}
	for i, l := range level {
		if l < 0 {
			level[i] = 0
		}
	}
	return level
}

// findCycles returns one cycle per strongly connected component that has
// one, each as the node list n0 → n1 → … where every node is a parent of
// the next and n0 depends on the last. A cycle starts at the lowest index
// of its component, and is the shortest one through it, so the report is
// the same every time.
func findCycles(parents [][]int) [][]int {
	n := len(parents)
	children := make([][]int, n)
	selfLoop := make([]bool, n)
	for c, ps := range parents {
		for _, p := range ps {
			children[p] = append(children[p], c)
			if p == c {
				selfLoop[c] = true
			}
		}
	}
	// Tarjan's algorithm.
	index, low := make([]int, n), make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var comps [][]int
	next := 0
	var strong func(v int)
	strong = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range children[v] {
			if index[w] < 0 {
				strong(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var comp []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			comps = append(comps, comp)
		}
	}
	for v := range n {
		if index[v] < 0 {
			strong(v)
		}
	}
	var cycles [][]int
	for _, comp := range comps {
		if len(comp) == 1 && !selfLoop[comp[0]] {
			continue
		}
		start := slices.Min(comp)
		cycles = append(cycles, shortestCycle(start, comp, children))
	}
	slices.SortFunc(cycles, func(a, b []int) int { return a[0] - b[0] })
	return cycles
}

// shortestCycle finds the shortest path start → … → start inside comp.
func shortestCycle(start int, comp []int, children [][]int) []int {
	in := map[int]bool{}
	for _, c := range comp {
		in[c] = true
	}
	prev := map[int]int{}
	queue := []int{start}
	seen := map[int]bool{start: true}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		kids := slices.Clone(children[v])
		slices.Sort(kids)
		for _, w := range kids {
			if !in[w] {
				continue
			}
			if w == start {
				path := []int{v}
				for path[0] != start {
					path = append([]int{prev[path[0]]}, path...)
				}
				return path
			}
			if !seen[w] {
				seen[w] = true
				prev[w] = v
				queue = append(queue, w)
			}
		}
	}
	return []int{start}
}

// mermaidReserved are words Mermaid's flowchart parser will not take as a
// node id.
var mermaidReserved = map[string]bool{
	"end": true, "graph": true, "flowchart": true, "subgraph": true, "style": true, "class": true,
	"classdef": true, "click": true, "linkstyle": true, "direction": true, "call": true, "href": true, "default": true,
}

// mermaid renders the steps and edges as "graph TD" text, one node per
// line with its name as the label.
func mermaid(steps []StepTemplate, edges []GraphEdge) string {
	id := func(name string) string {
		if mermaidReserved[name] {
			return "step_" + name
		}
		return name
	}
	var b strings.Builder
	b.WriteString("graph TD\n")
	for _, s := range steps {
		b.WriteString("  " + id(s.Name) + `["` + s.Name + `"]` + "\n")
	}
	for _, e := range edges {
		b.WriteString("  " + id(e.From) + " --> " + id(e.To) + "\n")
	}
	return b.String()
}
