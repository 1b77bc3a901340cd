package protocol

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"
)

const (
	tU = "0195b0c2-5e1d-7c3a-9a4e-2f6d8b1c0a11"
	sU = "0195b0c2-5e1d-7c3a-9a4e-2f6d8b1c0a12"
	cU = "0195b0c2-5e1d-7c3a-9a4e-2f6d8b1c0a13"
)

func TestDecodeStepMessage(t *testing.T) {
	want := StepMessage{TaskUUID: uuid.MustParse(tU), StepUUID: uuid.MustParse(sU), CorrelationID: uuid.MustParse(cU)}
	tests := []struct {
		name    string
		in      string
		field   string
		sentErr error
	}{
		{name: "valid", in: `{"task_uuid":"` + tU + `","step_uuid":"` + sU + `","correlation_id":"` + cU + `"}`},
		{name: "unknown fields ignored", in: `{"extra":1,"task_uuid":"` + tU + `","step_uuid":"` + sU + `","correlation_id":"` + cU + `"}`},
		{name: "simple uuid form", in: `{"task_uuid":"0195b0c25e1d7c3a9a4e2f6d8b1c0a11","step_uuid":"` + sU + `","correlation_id":"` + cU + `"}`},
		{name: "missing task", in: `{"step_uuid":"` + sU + `","correlation_id":"` + cU + `"}`, field: "task_uuid", sentErr: ErrMissingField},
		{name: "missing correlation", in: `{"task_uuid":"` + tU + `","step_uuid":"` + sU + `"}`, field: "correlation_id", sentErr: ErrMissingField},
		{name: "null step", in: `{"task_uuid":"` + tU + `","step_uuid":null,"correlation_id":"` + cU + `"}`, field: "step_uuid", sentErr: ErrInvalidField},
		{name: "number step", in: `{"task_uuid":"` + tU + `","step_uuid":42,"correlation_id":"` + cU + `"}`, field: "step_uuid", sentErr: ErrInvalidField},
		{name: "bad uuid", in: `{"task_uuid":"not-a-uuid","step_uuid":"` + sU + `","correlation_id":"` + cU + `"}`, field: "task_uuid", sentErr: ErrInvalidField},
		{name: "array", in: `[1,2,3]`, sentErr: ErrMalformedMessage},
		{name: "empty", in: ``, sentErr: ErrMalformedMessage},
		{name: "truncated", in: `{"task_uuid":"` + tU, sentErr: ErrMalformedMessage},
		{name: "trailing garbage", in: `{"task_uuid":"` + tU + `"} x`, sentErr: ErrMalformedMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeStepMessage([]byte(tc.in))
			if tc.sentErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got.StepUUID != want.StepUUID || got.CorrelationID != want.CorrelationID {
					t.Fatalf("got %+v", got)
				}
				if tc.name != "simple uuid form" && got != want {
					t.Fatalf("got %+v want %+v", got, want)
				}
				return
			}
			var me *MessageError
			if !errors.As(err, &me) {
				t.Fatalf("want *MessageError, got %T %v", err, err)
			}
			if !errors.Is(err, tc.sentErr) {
				t.Fatalf("want %v, got %v", tc.sentErr, err)
			}
			if me.Field != tc.field {
				t.Fatalf("field = %q, want %q", me.Field, tc.field)
			}
		})
	}
}

func TestStepMessageRoundTrip(t *testing.T) {
	m := StepMessage{TaskUUID: uuid.MustParse(tU), StepUUID: uuid.MustParse(sU), CorrelationID: uuid.MustParse(cU)}
	data := mustMarshal(t, m)
	assertJSONEqual(t, data, []byte(`{"task_uuid":"`+tU+`","step_uuid":"`+sU+`","correlation_id":"`+cU+`"}`))
	var back StepMessage
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back != m {
		t.Fatalf("round trip: %+v != %+v", back, m)
	}
	if err := json.Unmarshal([]byte(`{"task_uuid":"`+tU+`"}`), &back); !errors.Is(err, ErrMissingField) {
		t.Fatalf("UnmarshalJSON must apply the strict rules, got %v", err)
	}
}

func FuzzDecodeStepMessage(f *testing.F) {
	f.Add([]byte(`{"task_uuid":"` + tU + `","step_uuid":"` + sU + `","correlation_id":"` + cU + `"}`))
	f.Add([]byte(`{"task_uuid":"` + tU + `","step_uuid":null}`))
	f.Add([]byte(`{"task_uuid":"{` + tU + `}","step_uuid":"urn:uuid:` + sU + `","correlation_id":"` + cU + `","x":[1]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"task_uuid":"` + tU + `","task_uuid":"` + sU + `"}`))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := DecodeStepMessage(data)
		if err != nil {
			var me *MessageError
			if !errors.As(err, &me) {
				t.Fatalf("error is not a *MessageError: %T %v", err, err)
			}
			if !errors.Is(err, ErrMissingField) && !errors.Is(err, ErrInvalidField) && !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if me.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		// A decoded message re-encodes canonically and decodes to the same value.
		again, err := DecodeStepMessage(mustMarshal(t, msg))
		if err != nil {
			t.Fatalf("re-decode of %+v: %v", msg, err)
		}
		if again != msg {
			t.Fatalf("round trip changed the message: %+v != %+v", again, msg)
		}
	})
}
