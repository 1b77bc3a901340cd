package queue

import (
	"errors"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	if got := WorkerQueue("payments"); got != "worker_payments_queue" {
		t.Errorf("WorkerQueue = %q", got)
	}
	if got := DomainEventsQueue("payments"); got != "payments_domain_events" {
		t.Errorf("DomainEventsQueue = %q", got)
	}
	if got := NotifyChannel("payments"); got != "pgmq_message_ready.payments" {
		t.Errorf("NotifyChannel = %q", got)
	}
}

func TestNamespaceOfQueue(t *testing.T) {
	cases := map[string]string{
		"orchestration_step_results":        "orchestration",
		"orchestration_task_requests":       "orchestration",
		"orchestrationfoo":                  "orchestration",
		"worker_fulfillment_queue":          "fulfillment",
		"worker_a_b_queue":                  "a_b",
		"worker_x_queue_queue":              "x_queue",
		"worker_queue":                      "worker",
		"worker__queue":                     "worker",
		"fulfillment_queue":                 "fulfillment",
		"1abc_queue":                        "default",
		"_abc_queue":                        "default",
		"payments_domain_events":            "default",
		"_queue":                            "default",
		"queue":                             "default",
		"Orchestration_x":                   "default",
		"worker_payments_domain_events":     "default",
		"worker_payments_domain_events_dlq": "default",
	}
	for in, want := range cases {
		if got := NamespaceOfQueue(in); got != want {
			t.Errorf("NamespaceOfQueue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateName(t *testing.T) {
	good := []string{"a", "_x", "worker_payments_queue", "Q1", strings.Repeat("a", 47)}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	bad := []string{"", "a;drop", "x'--", "1abc", "a-b", "a b", "a.b", "ä", strings.Repeat("a", 48), "$x"}
	for _, n := range bad {
		err := ValidateName(n)
		var ne *NameError
		if !errors.As(err, &ne) || !errors.Is(err, ErrInvalidName) || ne.Name != n || ne.Kind != "queue" {
			t.Errorf("ValidateName(%q) = %v, want *NameError", n, err)
		}
	}
}

func TestValidateNamespace(t *testing.T) {
	for _, n := range []string{"payments", "a_b", "1x", strings.Repeat("n", 29)} {
		if err := ValidateNamespace(n); err != nil {
			t.Errorf("ValidateNamespace(%q) = %v", n, err)
		}
		// Every queue derived from a valid namespace that starts with a letter is valid.
		if n[0] >= 'a' {
			for _, q := range []string{WorkerQueue(n), DomainEventsQueue(n), DomainEventsDLQ(n)} {
				if err := ValidateName(q); err != nil {
					t.Errorf("derived queue %q: %v", q, err)
				}
			}
		}
	}
	for _, n := range []string{"", "a.b", "a;b", strings.Repeat("n", 30)} {
		if err := ValidateNamespace(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateNamespace(%q) = %v, want ErrInvalidName", n, err)
		}
	}
}
