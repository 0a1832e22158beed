package events

import (
	"fmt"
	"regexp"
	"strings"
)

// A pattern selects events by name: an exact name ("step.failed"), every
// name under a prefix ("task.*", "order.*"), or every event ("*").
var patternRE = regexp.MustCompile(`^(\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?)$`)

// ValidatePattern reports a pattern that can never be matched as written.
func ValidatePattern(p string) error {
	if !patternRE.MatchString(p) {
		return fmt.Errorf("%q is not an event name or pattern: write a name (step.failed), a prefix and .* (task.*), or *", p)
	}
	return nil
}

// Match reports whether name matches pattern.
func Match(pattern, name string) bool {
	if pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, ".*"); ok {
		return strings.HasPrefix(name, prefix+".")
	}
	return pattern == name
}

// MatchAny reports whether name matches any of patterns.
func MatchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if Match(p, name) {
			return true
		}
	}
	return false
}
