package exhandlers

import (
	"context"
	"fmt"
	"slices"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
)

// Conditional approval (README "Conditional approval"): validate_request, then the
// routing_decision decision point creates auto_approve, manager_approval or both
// manager_approval and finance_review; the deferred-convergence finalize_approval summarises
// whichever approvals were created.

func validateRequest(_ context.Context, step *handlers.StepContext) handlers.Result {
	amount, ok := inputInt64(step, "amount")
	if !ok {
		return validationFailure("Task context must contain amount", "MISSING_AMOUNT", map[string]any{"field": "amount"})
	}
	if amount <= 0 {
		return validationFailure("Amount must be positive", "INVALID_AMOUNT", map[string]any{"amount": amount})
	}
	requester, ok := inputStringStrict(step, "requester")
	if !ok {
		return validationFailure("Task context must contain requester", "MISSING_REQUESTER", map[string]any{"field": "requester"})
	}
	if requester == "" {
		return validationFailure("Requester cannot be empty", "EMPTY_REQUESTER", nil)
	}
	purpose, ok := inputStringStrict(step, "purpose")
	if !ok {
		return validationFailure("Task context must contain purpose", "MISSING_PURPOSE", map[string]any{"field": "purpose"})
	}
	if purpose == "" {
		return validationFailure("Purpose cannot be empty", "EMPTY_PURPOSE", nil)
	}
	return handlers.Success(map[string]any{
		"amount":       amount,
		"requester":    requester,
		"purpose":      purpose,
		"validated_at": rfc3339(now()),
	}, map[string]any{
		"operation":         "validate",
		"step_type":         "initial",
		"validation_checks": []string{"amount_positive", "requester_present", "purpose_present"},
	})
}

// inputStringStrict is a string context field; ok is false when absent or not a string.
func inputStringStrict(step *handlers.StepContext, key string) (string, bool) {
	v, ok := inputValue(step, key)
	if !ok {
		return "", false
	}
	return asString(v)
}

// route is the routing decision for an amount.
type route struct {
	routeType string
	steps     []string
	reasoning string
}

// routeFor applies the thresholds: amount < small → auto; < large → manager; else both.
func routeFor(amount, small, large int64) route {
	switch {
	case amount < small:
		return route{"auto_approval", []string{"auto_approve"},
			fmt.Sprintf("Amount $%d below $%d threshold - auto-approval", amount, small)}
	case amount < large:
		return route{"manager_only", []string{"manager_approval"},
			fmt.Sprintf("Amount $%d requires manager approval (between $%d and $%d)", amount, small, large)}
	}
	return route{"dual_approval", []string{"manager_approval", "finance_review"},
		fmt.Sprintf("Amount $%d >= $%d - requires both manager and finance approval", amount, large)}
}

func routingDecision(_ context.Context, step *handlers.StepContext) handlers.Result {
	amount, ok := inputInt64(step, "amount")
	if !ok {
		return fail("Amount is required for routing decision", errTypeDecision, "MISSING_AMOUNT", false, nil)
	}
	small := configInt(step, "small_amount_threshold", 1000)
	large := configInt(step, "large_amount_threshold", 5000)
	r := routeFor(amount, small, large)
	return handlers.DecisionWithOutcome(protocol.CreateSteps(r.steps...), map[string]any{
		"route_type": r.routeType,
		"reasoning":  r.reasoning,
		"amount":     amount,
	}).With(handlers.WithMetadata(map[string]any{
		"operation":        "routing_decision",
		"route_thresholds": map[string]any{"small": small, "large": large},
	}))
}

// approver describes one approval step's fixed answer.
type approver struct {
	operation, approvalType, approvedBy, notes string
}

func approve(a approver) handlers.HandlerFunc {
	return func(_ context.Context, step *handlers.StepContext) handlers.Result {
		amount, _ := inputInt64(step, "amount")
		return handlers.Success(map[string]any{
			"approved":        true,
			"approval_type":   a.approvalType,
			"approved_amount": amount,
			"approved_by":     a.approvedBy,
			"approved_at":     rfc3339(now()),
			"notes":           a.notes,
		}, map[string]any{"operation": a.operation, "step_type": "dynamic_branch"})
	}
}

// approvalPath names the path from the sorted approval types.
func approvalPath(types []string) string {
	switch {
	case slices.Equal(types, []string{"automatic"}):
		return "auto"
	case slices.Equal(types, []string{"manager"}):
		return "manager_only"
	case slices.Equal(types, []string{"finance", "manager"}):
		return "dual_approval"
	}
	return "unknown"
}

func finalizeApproval(_ context.Context, step *handlers.StepContext) handlers.Result {
	amount, _ := inputInt64(step, "amount")
	types, approvedBy := []string{}, []string{}
	approvals := 0
	for _, name := range []string{"auto_approve", "manager_approval", "finance_review"} {
		res, ok := dependencyObject(step, name)
		if !ok {
			continue
		}
		if approved, _ := res["approved"].(bool); !approved {
			continue
		}
		approvals++
		if t, ok := asString(res["approval_type"]); ok {
			types = append(types, t)
		}
		if by, ok := asString(res["approved_by"]); ok {
			approvedBy = append(approvedBy, by)
		}
	}
	slices.Sort(types)
	return handlers.Success(map[string]any{
		"approved":       true,
		"final_amount":   amount,
		"requester":      inputString(step, "requester", "unknown"),
		"purpose":        inputString(step, "purpose", "unknown"),
		"approval_chain": types,
		"approved_by":    approvedBy,
		"finalized_at":   rfc3339(now()),
		"approval_path":  approvalPath(types),
	}, map[string]any{"operation": "finalize_approval", "step_type": "convergence", "approval_count": approvals})
}

func approvalHandlers() []entry {
	return []entry{
		{"conditional_approval.validate_request", handlers.HandlerFunc(validateRequest)},
		{"conditional_approval.routing_decision", handlers.HandlerFunc(routingDecision)},
		{"conditional_approval.auto_approve", approve(approver{"auto_approve", "automatic", "system",
			"Automatically approved - below manual review threshold"})},
		{"conditional_approval.manager_approval", approve(approver{"manager_approval", "manager", "manager_rust_example",
			"Approved by manager - medium/large amount"})},
		{"conditional_approval.finance_review", approve(approver{"finance_review", "finance", "finance_rust_example",
			"Approved by finance - large amount requiring dual approval"})},
		{"conditional_approval.finalize_approval", handlers.HandlerFunc(finalizeApproval)},
	}
}
