package template

import (
	"errors"
	"fmt"
	"strings"
)

// Problem is one thing wrong with a template, at a field path such as
// "steps[2].handler.callable". Line is the 1-based YAML line when known, else 0.
type Problem struct {
	Path    string
	Message string
	Line    int
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists every problem found in one template.
// Its message has one line per problem: "<source>: <path>: <message>".
type ValidationError struct {
	Source   string
	Problems []Problem
}

func (e *ValidationError) Error() string {
	src := e.Source
	if src == "" {
		src = "template"
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = src + ": " + p.String()
	}
	return strings.Join(lines, "\n")
}

// LoadError collects the validation errors of every file LoadDir could not use.
type LoadError struct {
	Dir    string
	Errors []*ValidationError
}

func (e *LoadError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, ve := range e.Errors {
		parts[i] = ve.Error()
	}
	return fmt.Sprintf("template: %d invalid file(s) under %s:\n%s", len(e.Errors), e.Dir, strings.Join(parts, "\n"))
}

// Unwrap exposes each file's *ValidationError to errors.As.
func (e *LoadError) Unwrap() []error {
	out := make([]error, len(e.Errors))
	for i, ve := range e.Errors {
		out[i] = ve
	}
	return out
}

// ContextError says how a task's context fails its template's input_schema. Problem paths are
// inside the context ("items[0].quantity"); "" is the context itself.
type ContextError struct {
	Template string
	Problems []Problem
}

func (e *ContextError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Path == "" {
			parts[i] = "(context): " + p.Message
		} else {
			parts[i] = p.String()
		}
	}
	return fmt.Sprintf("template: context does not match input_schema of %s: %s", e.Template, strings.Join(parts, "; "))
}

// ErrTemplateNotFound is returned by Lookup when no named task matches.
var ErrTemplateNotFound = errors.New("template: task template not registered")

// ErrNoConfiguration is returned by Lookup when the named task has no template JSON
// (configuration NULL or {}), which tasker-core also refuses.
var ErrNoConfiguration = errors.New("template: named task has no template configuration")
