package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics, that failures are *ValidationError, and that an
// accepted template survives JSON serialization unchanged (what a worker writes to
// named_tasks.configuration is what every reader gets back).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(minimalYAML))
	f.Add([]byte(orderSchemaTemplate))
	f.Add([]byte("name: &a [*a]\n"))
	f.Add([]byte("steps:\n  - {name: a, dependencies: [a], handler: {callable: 1e400}}\n"))
	f.Add([]byte("input_schema: {x: .nan, y: 0x10, z: !!binary aGk=}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range [][]Option{nil, {AllowUnknownFields()}} {
			tt, err := Parse(data, "fuzz.yaml", opts...)
			if err != nil {
				var ve *ValidationError
				if !errors.As(err, &ve) || len(ve.Problems) == 0 {
					t.Fatalf("error is not a non-empty *ValidationError: %T %v", err, err)
				}
				continue
			}
			verr := tt.Validate()
			if verr != nil {
				var ve *ValidationError
				if !errors.As(verr, &ve) || len(ve.Problems) == 0 {
					t.Fatalf("Validate error is not a non-empty *ValidationError: %T %v", verr, verr)
				}
			}
			b1, err := json.Marshal(tt)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if !json.Valid(b1) {
				t.Fatalf("invalid JSON: %s", b1)
			}
			back, err := ParseJSON(b1, "fuzz.yaml")
			if err != nil {
				t.Fatalf("ParseJSON of our own JSON: %v\n%s", err, b1)
			}
			b2, err := json.Marshal(back)
			if err != nil {
				t.Fatalf("marshal again: %v", err)
			}
			if !bytes.Equal(b1, b2) {
				t.Fatalf("JSON not stable\n first: %s\nsecond: %s", b1, b2)
			}
			if (back.Validate() == nil) != (verr == nil) {
				t.Fatalf("validity changed across JSON: before %v, after %v", verr, back.Validate())
			}
			if verr == nil {
				_ = ValidateContext(tt, []byte(`{"a":1}`))
				_ = tt.InitialStepSet()
			}
		}
	})
}
