package template

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadDir parses and validates every *.yaml and *.yml file under dir (recursively, in lexical
// order), as a tasker-core worker discovers its templates. It returns the templates that are
// valid and, if any file is not, a *LoadError holding every problem of every bad file, so one
// run shows everything to fix. Two files defining the same namespace/name/version are an error
// for the second file. A missing or unreadable dir is a plain error.
func LoadDir(dir string, opts ...Option) ([]*TaskTemplate, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("template: read directory %s: %w", dir, err)
	}
	var (
		out  []*TaskTemplate
		bad  []*ValidationError
		seen = map[string]string{}
	)
	for _, f := range files {
		t, err := LoadFile(f, opts...)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				ve = &ValidationError{Source: f, Problems: []Problem{{Message: err.Error()}}}
			}
			bad = append(bad, ve)
			continue
		}
		if prev, dup := seen[t.Key()]; dup {
			bad = append(bad, &ValidationError{Source: f, Problems: []Problem{{Message: fmt.Sprintf("template %s is already defined in %s", t.Key(), prev)}}})
			continue
		}
		seen[t.Key()] = f
		out = append(out, t)
	}
	if len(bad) > 0 {
		return out, &LoadError{Dir: dir, Errors: bad}
	}
	return out, nil
}

// LoadFile reads, parses and validates one template file.
func LoadFile(path string, opts ...Option) (*TaskTemplate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	t, err := Parse(data, path, opts...)
	if err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}
