// Package queue is tasker's typed client for PGMQ queues: sending (optionally with tasker's
// LISTEN/NOTIFY wrappers), reading, acknowledging, metrics, a reconnecting notification Listener
// and a Waker for "notification or poll interval" consumers.
//
// It works against the real pgmq extension (1.5.1 and newer) and against tasker-go's compatible
// pgmq schema (migrations/pgmq/compat.sql).
package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
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

// ErrNameConflict is matched (errors.Is) by every *NameConflictError.
var ErrNameConflict = errors.New("queue: name differs only in letter case from one in use")

// NameConflictError reports a namespace or queue name that differs only in letter case from one
// already in use. PGMQ names a queue's tables after its lower-cased name, so the two would share
// one queue.
type NameConflictError struct {
	Kind     string // "namespace" or "queue"
	Name     string // the name refused
	Existing string // the name in use that folds (FoldName) like Name
	Source   string // where Existing was found, e.g. "tasker.task_namespaces"
}

// Error names both names, where the existing one was found and the table they would share.
func (e *NameConflictError) Error() string {
	table := FoldName(e.Name)
	if e.Kind == "namespace" {
		table = FoldName(WorkerQueue(e.Name))
	}
	return fmt.Sprintf("queue: %s %q conflicts with existing %s %q (%s): PGMQ lower-cases queue names, "+
		"so both would use the queue table pgmq.q_%s; use the existing name or one that differs in more than letter case",
		e.Kind, e.Name, e.Kind, e.Existing, e.Source, table)
}

// Is makes errors.Is(err, ErrNameConflict) true.
func (e *NameConflictError) Is(target error) bool { return target == ErrNameConflict }

// FoldName returns name as PGMQ keys a queue's tables: lower-cased. Names that fold alike are
// one name to PGMQ, so tasker-go allows only one spelling of each.
func FoldName(name string) string { return strings.ToLower(name) }

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
// Letter case is kept, as tasker-core keeps it; what is refused is a second namespace that differs
// from one in use only in case (ValidateNamespaces within a list, CheckNamespace and EnsureQueue
// against the database), since PGMQ folds both to one queue table.
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

// ValidateNamespaces checks each namespace with ValidateNamespace and refuses two that differ
// only in letter case (a *NameConflictError naming both). Repeating one name exactly is allowed.
func ValidateNamespaces(namespaces []string) error {
	seen := make(map[string]string, len(namespaces))
	for _, ns := range namespaces {
		if err := ValidateNamespace(ns); err != nil {
			return err
		}
		if prev, ok := seen[FoldName(ns)]; ok && prev != ns {
			return &NameConflictError{Kind: "namespace", Name: ns, Existing: prev, Source: "in the same list"}
		}
		seen[FoldName(ns)] = ns
	}
	return nil
}

// CheckNamespace validates namespace and refuses it, with a *NameConflictError naming both, when
// a namespace that differs only in letter case exists in tasker.task_namespaces, or one of its
// queues (worker, domain events, dead letters) exists in pgmq.meta under another spelling. It
// first takes a transaction-level advisory lock on the folded name, which EnsureQueue takes too,
// so tx must be the READ COMMITTED transaction that then creates the namespace row: a
// concurrent creation of another spelling waits for its commit and then sees it.
func CheckNamespace(ctx context.Context, tx DBTX, namespace string) error {
	if err := ValidateNamespace(namespace); err != nil {
		return err
	}
	haveNamespaces, err := lockFolded(ctx, tx, namespaceLockKey(namespace))
	if err != nil {
		return err
	}
	return checkNamespace(ctx, tx, namespace, haveNamespaces)
}

// The advisory lock serialising the creation of names that fold alike, until the transaction
// ends. Its two-key form does not collide with single-key locks (migrations, pgmq's own). The
// statement also reports whether tasker's namespace table exists.
const lockFoldedSQL = `
SELECT to_regclass('tasker.task_namespaces') IS NOT NULL
  FROM (SELECT pg_advisory_xact_lock(hashtext('tasker-go name fold'), hashtext($1))) l`

func lockFolded(ctx context.Context, tx DBTX, key string) (haveNamespaces bool, err error) {
	if err := tx.QueryRow(ctx, lockFoldedSQL, key).Scan(&haveNamespaces); err != nil {
		return false, fmt.Errorf("queue: lock name %q: %w", key, err)
	}
	return haveNamespaces, nil
}

func namespaceLockKey(namespace string) string { return "namespace:" + FoldName(namespace) }

// namespaceQueues are the queues tasker-go derives from a namespace.
func namespaceQueues(namespace string) []string {
	return []string{WorkerQueue(namespace), DomainEventsQueue(namespace), DomainEventsDLQ(namespace)}
}

// namespaceOfDerived returns the namespace queue was derived from (namespaceQueues), if any.
// The affixes are compared ignoring case, so it also maps a differently-spelled queue found in
// pgmq.meta.
func namespaceOfDerived(queue string) (string, bool) {
	const workerPrefix, workerSuffix = "worker_", "_queue"
	l := FoldName(queue)
	for _, suffix := range []string{"_domain_events_dlq", "_domain_events"} {
		if strings.HasSuffix(l, suffix) && len(l) > len(suffix) {
			return queue[:len(queue)-len(suffix)], true
		}
	}
	if strings.HasPrefix(l, workerPrefix) && strings.HasSuffix(l, workerSuffix) && len(l) > len(workerPrefix)+len(workerSuffix) {
		return queue[len(workerPrefix) : len(queue)-len(workerSuffix)], true
	}
	return "", false
}

// checkNamespace looks for another spelling of namespace; the caller holds its lock.
func checkNamespace(ctx context.Context, tx DBTX, namespace string, haveNamespaces bool) error {
	exact := namespaceQueues(namespace)
	folded := make([]string, len(exact))
	for i, q := range exact {
		folded[i] = FoldName(q)
	}
	sql := `SELECT queue_name::text, 1 FROM pgmq.meta
	         WHERE lower(queue_name) = ANY($2::text[]) AND queue_name <> ALL($3::text[])`
	if haveNamespaces {
		sql = `SELECT name::text, 0 FROM tasker.task_namespaces WHERE lower(name) = lower($1) AND name <> $1
		       UNION ALL ` + sql
	} else {
		sql += ` AND $1::text IS NOT NULL`
	}
	var (
		found string
		from  int
	)
	err := tx.QueryRow(ctx, sql+` ORDER BY 2, 1 LIMIT 1`, namespace, folded, exact).Scan(&found, &from)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("queue: check namespace %q against existing names: %w", namespace, err)
	case from == 0:
		return &NameConflictError{Kind: "namespace", Name: namespace, Existing: found, Source: "tasker.task_namespaces"}
	}
	existing, _ := namespaceOfDerived(found)
	return &NameConflictError{Kind: "namespace", Name: namespace, Existing: existing,
		Source: fmt.Sprintf("its queue %q is in pgmq.meta", found)}
}

// checkQueue refuses queue when another spelling of it exists: for a queue derived from a
// namespace (namespaceQueues), another spelling of the namespace (CheckNamespace); for any other
// queue, another spelling in pgmq.meta. It takes the lock CheckNamespace takes, so tx must be the
// transaction that then creates the queue.
func checkQueue(ctx context.Context, tx DBTX, queue string) error {
	ns, derived := namespaceOfDerived(queue)
	derived = derived && ValidateNamespace(ns) == nil && slices.Contains(namespaceQueues(ns), queue)
	key := "queue:" + FoldName(queue)
	if derived {
		key = namespaceLockKey(ns)
	}
	haveNamespaces, err := lockFolded(ctx, tx, key)
	if err != nil {
		return err
	}
	if derived {
		return checkNamespace(ctx, tx, ns, haveNamespaces)
	}
	var found string
	err = tx.QueryRow(ctx, `SELECT queue_name::text FROM pgmq.meta
	                         WHERE lower(queue_name) = lower($1) AND queue_name <> $1
	                         ORDER BY 1 LIMIT 1`, queue).Scan(&found)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("queue: check queue %q against existing names: %w", queue, err)
	}
	return &NameConflictError{Kind: "queue", Name: queue, Existing: found, Source: "pgmq.meta"}
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
