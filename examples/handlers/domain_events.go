package exhandlers

import (
	"context"

	"github.com/tasker-go/tasker/handlers"
)

// Domain event publishing (README "Domain events"): four chained steps whose results are the
// payloads of the events the template declares (order.validated, payment.processed or
// payment.failed, inventory.updated, notification.sent). Publishing is the worker's job.

// inputFloat is a numeric context field, or def.
func inputFloat(step *handlers.StepContext, key string, def float64) float64 {
	if v, ok := inputValue(step, key); ok {
		if f, ok := asFloat64(v); ok {
			return f
		}
	}
	return def
}

// inputBool is a boolean context field, or def.
func inputBool(step *handlers.StepContext, key string, def bool) bool {
	if v, ok := inputValue(step, key); ok {
		if b, ok := v.(bool); ok {
			return b
		}
	}
	return def
}

func eventsValidateOrder(_ context.Context, step *handlers.StepContext) handlers.Result {
	orderID := inputString(step, "order_id", stepUUIDFor(step, "order_id").String())
	amount := inputFloat(step, "amount", 0)
	mode := configString(step, "validation_mode", "standard")
	if amount <= 0 && mode == "strict" {
		return validationFailure("Amount must be positive in strict mode", "VALIDATION_ERROR", nil)
	}
	checks := []string{"order_id_present", "customer_id_present"}
	if amount > 0 {
		checks = append(checks, "amount_positive")
	}
	ts := rfc3339(now())
	return handlers.Success(map[string]any{
		"order_id":             orderID,
		"validation_timestamp": ts,
		"validation_checks":    checks,
		"validated":            true,
	}, map[string]any{"validation_mode": mode, "validation_timestamp": ts})
}

func eventsProcessPayment(_ context.Context, step *handlers.StepContext) handlers.Result {
	amount := inputFloat(step, "amount", 0)
	orderID := inputString(step, "order_id", "unknown")
	ts := rfc3339(now())
	if inputBool(step, "simulate_failure", false) {
		return fail("Simulated payment failure", errTypePayment, "PAYMENT_DECLINED", true,
			map[string]any{"order_id": orderID, "failed_at": ts})
	}
	txn := "TXN-" + stepUUIDFor(step, "transaction").String()
	return handlers.Success(map[string]any{
		"transaction_id": txn,
		"amount":         amount,
		"payment_method": "credit_card",
		"processed_at":   ts,
		"status":         "success",
	}, map[string]any{"transaction_id": txn, "processed_at": ts, "payment_provider": configString(step, "payment_provider", "mock")})
}

func eventsUpdateInventory(_ context.Context, step *handlers.StepContext) handlers.Result {
	ts := rfc3339(now())
	return handlers.Success(map[string]any{
		"order_id": inputString(step, "order_id", "unknown"),
		"items": []map[string]any{
			{"sku": "ITEM-001", "quantity": 1},
			{"sku": "ITEM-002", "quantity": 2},
		},
		"success":    true,
		"updated_at": ts,
	}, map[string]any{"inventory_source": configString(step, "inventory_source", "mock"), "updated_at": ts})
}

func eventsSendNotification(_ context.Context, step *handlers.StepContext) handlers.Result {
	id := "NOTIF-" + stepUUIDFor(step, "notification").String()
	ts := rfc3339(now())
	return handlers.Success(map[string]any{
		"notification_id": id,
		"channel":         configString(step, "notification_type", "email"),
		"recipient":       inputString(step, "customer_id", "unknown"),
		"sent_at":         ts,
		"status":          "delivered",
	}, map[string]any{"notification_id": id, "sent_at": ts})
}

func domainEventHandlers() []entry {
	return []entry{
		{"domain_events.validate_order", handlers.HandlerFunc(eventsValidateOrder)},
		{"domain_events.process_payment", handlers.HandlerFunc(eventsProcessPayment)},
		{"domain_events.update_inventory", handlers.HandlerFunc(eventsUpdateInventory)},
		{"domain_events.send_notification", handlers.HandlerFunc(eventsSendNotification)},
	}
}
