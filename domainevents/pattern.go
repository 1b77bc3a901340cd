package domainevents

import (
	"fmt"
	"strings"
)

// MatchPattern reports whether a subscription pattern matches an event name.
//
//   - "*" matches every event.
//   - Otherwise pattern and name are split on dots and must have the same number of segments;
//     each pattern segment matches its name segment, where "*" inside a segment stands for any
//     run of characters (possibly none) within that segment.
//
// So "payment.*" matches "payment.processed" but neither "payment" nor "payment.card.captured",
// as in tasker-core's EventRegistry. Partial-segment globs ("pay*.processed") are a superset:
// tasker-core compares such segments literally, which no valid event name can match.
func MatchPattern(pattern, name string) bool {
	if pattern == "*" {
		return true
	}
	if !strings.Contains(pattern, "*") {
		return pattern == name
	}
	for {
		pseg, prest, pmore := strings.Cut(pattern, ".")
		nseg, nrest, nmore := strings.Cut(name, ".")
		if !matchSegment(pseg, nseg) {
			return false
		}
		if pmore != nmore {
			return false
		}
		if !pmore {
			return true
		}
		pattern, name = prest, nrest
	}
}

// matchSegment matches a glob whose only metacharacter is '*' (any run of characters).
func matchSegment(pattern, s string) bool {
	// Classic greedy matching with backtracking to the last star.
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ValidatePattern checks a subscription pattern: "*", or dot-separated non-empty segments
// without whitespace.
func ValidatePattern(pattern string) error {
	if pattern == "" {
		return fmt.Errorf("domainevents: empty event pattern")
	}
	if strings.ContainsAny(pattern, " \t\r\n") {
		return fmt.Errorf("domainevents: event pattern %q contains whitespace", pattern)
	}
	for _, seg := range strings.Split(pattern, ".") {
		if seg == "" {
			return fmt.Errorf("domainevents: event pattern %q has an empty segment", pattern)
		}
	}
	return nil
}
