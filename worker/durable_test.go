package worker

import (
	"encoding/json"
	"testing"
)

func TestDeclaresEvents(t *testing.T) {
	for raw, want := range map[string]bool{
		``:                 false,
		`null`:             false,
		`[]`:               false,
		` [ ] `:            false,
		`[{"name":"a.b"}]`: true,
		`{"name":"a.b"}`:   true, // not an array: the publisher reports it
		`"a.b"`:            true,
	} {
		if got := declaresEvents(json.RawMessage(raw)); got != want {
			t.Errorf("declaresEvents(%q) = %v, want %v", raw, got, want)
		}
	}
}
