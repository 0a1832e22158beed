package registry

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// errorList collects a document's errors. A value with a wrong type is
// reported once: errors at or below a pointer that already has a type
// error are follow-ups of it, and dropped.
type errorList struct {
	errs []FieldError
	bad  []string // pointers of values dropped for their type
}

// add records an error unless it follows from a type error.
func (l *errorList) add(ptr, msg string) {
	for _, b := range l.bad {
		if ptr == b || strings.HasPrefix(ptr, b+"/") {
			return
		}
	}
	for _, e := range l.errs {
		if e.Pointer == ptr && e.Message == msg {
			return
		}
	}
	l.errs = append(l.errs, FieldError{Pointer: ptr, Message: msg})
}

// shape records a type error; the value at ptr was dropped.
func (l *errorList) shape(ptr, msg string) {
	l.add(ptr, msg)
	l.bad = append(l.bad, ptr)
}

func (l *errorList) empty() bool { return len(l.errs) == 0 }

// sorted returns the errors in document order: by pointer, array indexes
// compared as numbers, keeping the order of errors at one pointer.
func (l *errorList) sorted() []FieldError {
	out := slices.Clone(l.errs)
	slices.SortStableFunc(out, func(a, b FieldError) int { return comparePointers(a.Pointer, b.Pointer) })
	return out
}

func comparePointers(a, b string) int {
	at, bt := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(at) && i < len(bt); i++ {
		if at[i] == bt[i] {
			continue
		}
		an, aerr := strconv.Atoi(at[i])
		bn, berr := strconv.Atoi(bt[i])
		if aerr == nil && berr == nil {
			return cmp.Compare(an, bn)
		}
		return strings.Compare(at[i], bt[i])
	}
	return cmp.Compare(len(at), len(bt))
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
