// Package exdomainevents holds the custom domain event publishers of the domain event
// publishing scenario (examples/templates/domain_event_publishing.yaml, e2e scenario 2.14):
// PaymentEventPublisher and NotificationEventPublisher. Wire them with Register:
//
//	pubs := domainevents.NewPublisherRegistry(log)
//	if err := exdomainevents.Register(pubs); err != nil { ... }
//	events := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{Publishers: pubs, Bus: bus})
//	w, err := worker.New(cfg, pool, handlers, worker.WithEvents(events))
package exdomainevents

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-go/tasker/domainevents"
)

// Register adds both publishers to r.
func Register(r *domainevents.PublisherRegistry) error {
	for _, p := range []domainevents.Publisher{PaymentEventPublisher{}, NotificationEventPublisher{}} {
		if err := r.Register(p); err != nil {
			return fmt.Errorf("exdomainevents: %w", err)
		}
	}
	return nil
}

// PaymentEventPublisher publishes payment.processed (success) and payment.failed (failure) for
// payment steps. payment.processed carries the transaction fields of the handler's result;
// payment.failed is built from the error, since a failed step's result is {} and would not
// match the event's schema (the default publisher would skip it).
type PaymentEventPublisher struct{}

// Name is the name templates use.
func (PaymentEventPublisher) Name() string { return "PaymentEventPublisher" }

// ShouldHandle accepts the payment steps of every language variant of the scenario.
func (PaymentEventPublisher) ShouldHandle(step string) bool {
	return strings.HasSuffix(step, "process_payment")
}

// TransformPayload builds the business payload of payment.processed or payment.failed.
func (PaymentEventPublisher) TransformPayload(_ context.Context, ec *domainevents.StepEventContext, _ domainevents.EventDeclaration) (json.RawMessage, error) {
	if ec.Succeeded() {
		var r struct {
			TransactionID string          `json:"transaction_id"`
			Amount        json.RawMessage `json:"amount"`
			PaymentMethod string          `json:"payment_method"`
			ProcessedAt   string          `json:"processed_at"`
		}
		if err := json.Unmarshal(ec.Result.Result, &r); err != nil {
			return nil, fmt.Errorf("payment result: %w", err)
		}
		out := map[string]any{"transaction_id": r.TransactionID, "amount": r.Amount, "payment_method": r.PaymentMethod}
		if r.ProcessedAt != "" {
			out["processed_at"] = r.ProcessedAt
		}
		return json.Marshal(out)
	}
	code, msg := "UNKNOWN", "payment failed"
	if c := ec.Result.Metadata.ErrorCode; c != nil {
		code = *c
	} else if t := ec.Result.Metadata.ErrorType; t != nil {
		code = *t
	}
	if ec.Result.Error != nil {
		msg = ec.Result.Error.Message
	}
	out := map[string]any{"error_code": code, "error_message": msg, "failed_at": time.Now().UTC().Format(time.RFC3339Nano)}
	var task struct {
		OrderID string `json:"order_id"`
	}
	if json.Unmarshal(ec.Step.Task.Task.Context, &task) == nil && task.OrderID != "" {
		out["order_id"] = task.OrderID
	}
	return json.Marshal(out)
}

// AdditionalMetadata records the payment provider the step was configured with.
func (PaymentEventPublisher) AdditionalMetadata(_ context.Context, ec *domainevents.StepEventContext, _ domainevents.EventDeclaration) (map[string]any, error) {
	var provider string
	if raw, ok := ec.Step.StepDefinition.Handler.Initialization["payment_provider"]; ok {
		_ = json.Unmarshal(raw, &provider)
	}
	if provider == "" {
		return nil, nil
	}
	return map[string]any{"payment_provider": provider}, nil
}

// NotificationEventPublisher publishes notification.sent with the delivery fields of the
// notification step's result.
type NotificationEventPublisher struct{}

// Name is the name templates use.
func (NotificationEventPublisher) Name() string { return "NotificationEventPublisher" }

// ShouldHandle accepts the notification steps of every language variant of the scenario.
func (NotificationEventPublisher) ShouldHandle(step string) bool {
	return strings.HasSuffix(step, "send_notification")
}

// TransformPayload keeps notification_id, channel, recipient and sent_at.
func (NotificationEventPublisher) TransformPayload(_ context.Context, ec *domainevents.StepEventContext, _ domainevents.EventDeclaration) (json.RawMessage, error) {
	var r struct {
		NotificationID string `json:"notification_id"`
		Channel        string `json:"channel"`
		Recipient      string `json:"recipient"`
		SentAt         string `json:"sent_at"`
	}
	if err := json.Unmarshal(ec.Result.Result, &r); err != nil {
		return nil, fmt.Errorf("notification result: %w", err)
	}
	out := map[string]any{"notification_id": r.NotificationID, "channel": r.Channel, "recipient": r.Recipient}
	if r.SentAt != "" {
		out["sent_at"] = r.SentAt
	}
	return json.Marshal(out)
}
