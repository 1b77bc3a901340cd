// Package queue is tasker's typed client for PGMQ queues: sending (optionally with tasker's
// LISTEN/NOTIFY wrappers), reading, acknowledging, metrics, a reconnecting notification Listener
// and a Waker for "notification or poll interval" consumers.
//
// It works against the real pgmq extension (1.5.1 and newer) and against tasker-go's compatible
// pgmq schema (migrations/pgmq/compat.sql).
package queue

import (
	"errors"
	"fmt"
	"strings"
)

// Fixed queue names used by tasker-core's orchestration.
const (
	StepResultsQueue       = "orchestration_step_results"
	TaskRequestsQueue      = "orchestration_task_requests"
	TaskFinalizationsQueue = "orchestration_task_finalizations"
)

// Notification channels written by tasker's SQL (tasker.pgmq_send_with_notify and the
// pgmq.meta trigger).
const (
	// GlobalNotifyChannel receives every notification of every namespace.
	GlobalNotifyChannel = "pgmq_message_ready"
	// QueueCreatedChannel receives queue_created events.
	QueueCreatedChannel = "pgmq_queue_created"
)

// Name limits from tasker-core's validation rules.
const (
	MaxQueueNameLen = 47
	MaxNamespaceLen = 29
)

// ErrInvalidName is matched (errors.Is) by every *NameError.
var ErrInvalidName = errors.New("queue: invalid name")

// NameError reports a queue name or namespace that PGMQ or tasker would refuse.
type NameError struct {
	Kind   string // "queue" or "namespace"
	Name   string
	Reason string
}

// Error describes the name and why it is refused.
func (e *NameError) Error() string {
	return fmt.Sprintf("queue: invalid %s name %q: %s", e.Kind, e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidName) true.
func (e *NameError) Is(target error) bool { return target == ErrInvalidName }

// WorkerQueue returns the step queue of a namespace: "worker_<namespace>_queue".
func WorkerQueue(namespace string) string { return "worker_" + namespace + "_queue" }

// DomainEventsQueue returns the durable domain-event queue of a namespace.
func DomainEventsQueue(namespace string) string { return namespace + "_domain_events" }

// DomainEventsDLQ returns the (created, never written) domain-event dead-letter queue of a namespace.
func DomainEventsDLQ(namespace string) string { return namespace + "_domain_events_dlq" }

// NotifyChannel returns the per-namespace channel tasker.pgmq_send_with_notify notifies.
// It contains a dot, so LISTEN must quote it (the Listener does).
func NotifyChannel(namespace string) string { return GlobalNotifyChannel + "." + namespace }

// NamespaceOfQueue maps a queue name to the namespace of its notification channel, with the
// rules of tasker.extract_queue_namespace: "orchestration*" -> "orchestration",
// "worker_<ns>_queue" -> ns ("worker" if ns is empty), "<letter><word chars>_queue" -> the part
// before "_queue", anything else -> "default".
func NamespaceOfQueue(queue string) string {
	const workerPrefix, suffix = "worker_", "_queue"
	switch {
	case strings.HasPrefix(queue, "orchestration"):
		return "orchestration"
	case strings.HasPrefix(queue, workerPrefix) && strings.HasSuffix(queue, suffix) &&
		len(queue) >= len(workerPrefix)+len(suffix):
		if ns := queue[len(workerPrefix) : len(queue)-len(suffix)]; ns != "" {
			return ns
		}
		return "worker" // "worker__queue", as tasker's SQL answers
	case strings.HasSuffix(queue, suffix) && len(queue) > len(suffix) &&
		isASCIILetter(queue[0]) && isWord(queue[:len(queue)-len(suffix)]):
		return queue[:len(queue)-len(suffix)]
	default:
		return "default"
	}
}

// ValidateName checks a queue name: [A-Za-z_][A-Za-z0-9_]*, at most MaxQueueNameLen characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return &NameError{Kind: "queue", Name: name, Reason: "empty"}
	case len(name) > MaxQueueNameLen:
		return &NameError{Kind: "queue", Name: name, Reason: fmt.Sprintf("longer than %d characters", MaxQueueNameLen)}
	case !(isASCIILetter(name[0]) || name[0] == '_') || !isWord(name):
		return &NameError{Kind: "queue", Name: name, Reason: "must match [A-Za-z_][A-Za-z0-9_]*"}
	}
	return nil
}

// ValidateNamespace checks a namespace: [A-Za-z0-9_]+, at most MaxNamespaceLen characters, so that
// every queue derived from it ("<ns>_domain_events_dlq" is the longest) stays a valid queue name.
func ValidateNamespace(namespace string) error {
	switch {
	case namespace == "":
		return &NameError{Kind: "namespace", Name: namespace, Reason: "empty"}
	case len(namespace) > MaxNamespaceLen:
		return &NameError{Kind: "namespace", Name: namespace, Reason: fmt.Sprintf("longer than %d characters", MaxNamespaceLen)}
	case !isWord(namespace):
		return &NameError{Kind: "namespace", Name: namespace, Reason: "must match [A-Za-z0-9_]+"}
	}
	return nil
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isASCIILetter(c) && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}
