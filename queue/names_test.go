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

func TestValidateNamespacesRefusesCaseVariants(t *testing.T) {
	for _, ok := range [][]string{nil, {"MyNamespace"}, {"MyNamespace", "other"}, {"a", "a"}, {"a_b", "ab"}} {
		if err := ValidateNamespaces(ok); err != nil {
			t.Errorf("ValidateNamespaces(%q) = %v", ok, err)
		}
	}
	err := ValidateNamespaces([]string{"MyNamespace", "x", "mynamespace"})
	var ce *NameConflictError
	if !errors.As(err, &ce) || !errors.Is(err, ErrNameConflict) || errors.Is(err, ErrInvalidName) {
		t.Fatalf("ValidateNamespaces(MyNamespace, mynamespace) = %v, want *NameConflictError", err)
	}
	if ce.Kind != "namespace" || ce.Name != "mynamespace" || ce.Existing != "MyNamespace" {
		t.Errorf("conflict = %+v", ce)
	}
	msg := err.Error()
	for _, want := range []string{`"mynamespace"`, `"MyNamespace"`, "pgmq.q_worker_mynamespace_queue"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %s", msg, want)
		}
	}
	if err := ValidateNamespaces([]string{"ok", "a.b"}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("ValidateNamespaces with an invalid name = %v, want ErrInvalidName", err)
	}
}

func TestFoldNameMatchesPGMQTables(t *testing.T) {
	// PGMQ's format_table_name lower-cases: these pairs share pgmq.q_<folded>.
	for _, pair := range [][2]string{
		{WorkerQueue("MyNamespace"), WorkerQueue("mynamespace")},
		{DomainEventsQueue("Billing"), DomainEventsQueue("BILLING")},
		{"Layout_Q", "layout_q"},
	} {
		if FoldName(pair[0]) != FoldName(pair[1]) || pair[0] == pair[1] {
			t.Errorf("%q and %q should fold alike", pair[0], pair[1])
		}
	}
	if FoldName("a_1") != "a_1" {
		t.Error("FoldName changed a lower-case name")
	}
	if err := (&NameConflictError{Kind: "queue", Name: "Layout_Q", Existing: "layout_q", Source: "pgmq.meta"}).Error(); !strings.Contains(err, "pgmq.q_layout_q") {
		t.Errorf("queue conflict message %q does not name the shared table", err)
	}
}

func TestNamespaceOfDerived(t *testing.T) {
	cases := map[string]string{
		"worker_MyNamespace_queue":          "MyNamespace",
		"WORKER_mynamespace_QUEUE":          "mynamespace",
		"MyNamespace_domain_events":         "MyNamespace",
		"MyNamespace_domain_events_dlq":     "MyNamespace",
		"worker_x_queue_domain_events":      "worker_x_queue",
		"worker_payments_domain_events_dlq": "worker_payments",
		"payments_DOMAIN_EVENTS":            "payments",
		"orchestration_step_results":        "",
		"worker__queue":                     "",
		"_domain_events":                    "",
		"plain":                             "",
	}
	for q, want := range cases {
		got, ok := namespaceOfDerived(q)
		if got != want || ok != (want != "") {
			t.Errorf("namespaceOfDerived(%q) = %q, %v; want %q", q, got, ok, want)
		}
	}
	for _, ns := range []string{"MyNamespace", "a", "x_queue"} {
		for _, q := range namespaceQueues(ns) {
			if got, ok := namespaceOfDerived(q); !ok || got != ns {
				t.Errorf("namespaceOfDerived(%q) = %q, want %q", q, got, ns)
			}
		}
	}
}
