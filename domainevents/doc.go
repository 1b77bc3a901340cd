// Package domainevents publishes and consumes the domain events that template steps declare in
// publishes_events (worker-protocol §9), in tasker-core's envelope format (DomainEvent).
//
// # Publishing
//
// A StepPublisher is the worker's EventPublisher (worker.WithEvents). For each step result the
// worker completes it parses the step's declarations, picks the step's Publisher (the first
// declaration's `publisher`, or DefaultPublisher; unknown names fall back to the default with a
// warning), and for every declaration whose condition holds builds an envelope whose business
// payload the publisher produced and the declared schema accepted. Payloads that fail the
// schema are logged and skipped; publishing never fails a step. Results the worker reports
// without running a handler (a recovered abandoned step, a step missing from its template)
// publish nothing.
//
// Delivery modes:
//   - durable: the envelope is sent with tasker.pgmq_send_with_notify to
//     "<task namespace>_domain_events" INSIDE the step's completion transaction, so the event
//     exists exactly when the step's result committed: a completion that rolls back (late
//     completion fence, database error) leaves no event. tasker-core publishes after (in its
//     dispatch path even before) the result is persisted, so its events can exist for results
//     that never did. A failed send fails the completion (the transaction is unusable anyway).
//   - fast: the envelope goes to the in-process Bus after the completion committed. Best
//     effort: lost on crash, dropped when a subscriber's buffer is full, never sent for a
//     rolled-back result.
//   - broadcast: both, with different event_ids and the same business payload. tasker-core
//     routes the fast copy first; here the durable copy is written in the transaction and the
//     fast copy follows the commit.
//
// Conditions success, failure and always behave as in tasker-core. retryable_failure and
// permanent_failure never fire in tasker-core (no call site passes the retryability); here
// they do: a failure is retryable when the orchestrator will retry it (metadata.retryable and
// attempts left), otherwise permanent. See OutcomeOf.
//
// # Consuming
//
// Subscribers name glob patterns (MatchPattern) and live in a SubscriberRegistry. The Bus
// delivers fast events to them, each subscriber on its own goroutine and bounded queue, so a
// slow or panicking subscriber never blocks the step pipeline or the other subscribers.
//
// The DurableConsumer reads "<ns>_domain_events" with a visibility timeout and delivers each
// event to every matching subscriber; the message is deleted only when all of them succeeded
// (at least once). After a partial failure the subscribers that succeeded are recorded in the
// message's DeliveredToHeader and skipped on redelivery. A message is read at most
// MaxDeliveries times, then archived with a reason header. All state is in the queue, so
// consumers can stop, restart and run in several processes; the only repeated deliveries are
// those a crash or a hard stop interrupted, or those a subscriber failed.
package domainevents
