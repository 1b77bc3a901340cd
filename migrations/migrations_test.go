package migrations

import (
	"errors"
	"strings"
	"testing"
)

func TestParseFileName(t *testing.T) {
	cases := []struct {
		file, version, name string
		ok                  bool
	}{
		{"0001_schema.sql", "0001", "schema", true},
		{"0012_add_more_things.sql", "0012", "add_more_things", true},
		{"schema.sql", "", "", false},
		{"00a1_schema.sql", "", "", false},
		{"0001_.sql", "", "", false},
		{"0000_pgmq.sql", "", "", false},
	}
	for _, c := range cases {
		v, n, err := parseFileName(c.file)
		if (err == nil) != c.ok || v != c.version || n != c.name {
			t.Errorf("parseFileName(%q) = %q, %q, %v; want %q, %q, ok=%v", c.file, v, n, err, c.version, c.name, c.ok)
		}
	}
}

func TestMigrationsEmbeddedInOrder(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 3 {
		t.Fatalf("want at least 3 embedded migrations, got %d", len(ms))
	}
	for i, m := range ms {
		if i > 0 && ms[i-1].Version >= m.Version {
			t.Errorf("migrations out of order: %s before %s", ms[i-1].Version, m.Version)
		}
		if m.Checksum != checksum(m.SQL) || len(m.Checksum) != 64 {
			t.Errorf("%s: bad checksum %q", m.Version, m.Checksum)
		}
		if strings.TrimSpace(m.SQL) == "" {
			t.Errorf("%s_%s is empty", m.Version, m.Name)
		}
	}
	if ms[0].Version != "0001" || ms[0].Name != "schema" {
		t.Errorf("first migration = %s_%s, want 0001_schema", ms[0].Version, ms[0].Name)
	}
}

func TestMissingSchemaErrorMessage(t *testing.T) {
	var err error = &MissingSchemaError{Missing: []string{"schema tasker", "tasker.workflow_steps"}}
	msg := err.Error()
	for _, want := range []string{"2 object(s)", "schema tasker", "tasker.workflow_steps", "tasker migrate", "tasker-core"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	var mse *MissingSchemaError
	if !errors.As(err, &mse) || len(mse.Missing) != 2 {
		t.Errorf("errors.As failed: %v", err)
	}
}

func TestChecksumErrorMessage(t *testing.T) {
	err := &ChecksumError{Version: "0002", Name: "functions", Recorded: strings.Repeat("a", 64), Embedded: strings.Repeat("b", 64)}
	msg := err.Error()
	if !strings.Contains(msg, "0002_functions") || !strings.Contains(msg, "aaaaaaaaaaaa") || !strings.Contains(msg, "bbbbbbbbbbbb") {
		t.Errorf("unexpected message %q", msg)
	}
}

func TestEveryRequiredFunctionHasASignature(t *testing.T) {
	for _, f := range RequiredFunctions {
		sig, ok := FunctionSignatures[f]
		if !ok {
			t.Errorf("FunctionSignatures has no entry for required function %s", f)
			continue
		}
		if sig.Result == "" || strings.Contains(sig.Args, "  ") {
			t.Errorf("%s: malformed signature %+v", f, sig)
		}
	}
	if len(FunctionSignatures) != len(RequiredFunctions) {
		t.Errorf("FunctionSignatures has %d entries for %d required functions", len(FunctionSignatures), len(RequiredFunctions))
	}
}

func TestMissingSchemaErrorMentionsMismatchedSignatures(t *testing.T) {
	err := &MissingSchemaError{Mismatched: []string{"function tasker.get_slowest_steps(integer) returns integer; want (...)"}}
	msg := err.Error()
	for _, want := range []string{"1 function(s) have a different signature", "tasker.get_slowest_steps(integer)", "tasker migrate"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "missing") {
		t.Errorf("error %q claims objects are missing", msg)
	}
}
