package exhandlers

import (
	"fmt"
	"testing"
)

const approvalThresholds = `{"small_amount_threshold":1000,"large_amount_threshold":5000}`

func TestRoutingDecisionOutcomes(t *testing.T) {
	cases := []struct {
		amount int
		want   string
	}{
		{500, `{"route_type":"auto_approval","reasoning":"Amount $500 below $1000 threshold - auto-approval","amount":500,
			"decision_point_outcome":{"type":"create_steps","step_names":["auto_approve"]}}`},
		{999, `{"route_type":"auto_approval","reasoning":"Amount $999 below $1000 threshold - auto-approval","amount":999,
			"decision_point_outcome":{"type":"create_steps","step_names":["auto_approve"]}}`},
		{1000, `{"route_type":"manager_only","reasoning":"Amount $1000 requires manager approval (between $1000 and $5000)","amount":1000,
			"decision_point_outcome":{"type":"create_steps","step_names":["manager_approval"]}}`},
		{3000, `{"route_type":"manager_only","reasoning":"Amount $3000 requires manager approval (between $1000 and $5000)","amount":3000,
			"decision_point_outcome":{"type":"create_steps","step_names":["manager_approval"]}}`},
		{5000, `{"route_type":"dual_approval","reasoning":"Amount $5000 >= $5000 - requires both manager and finance approval","amount":5000,
			"decision_point_outcome":{"type":"create_steps","step_names":["manager_approval","finance_review"]}}`},
		{10000, `{"route_type":"dual_approval","reasoning":"Amount $10000 >= $5000 - requires both manager and finance approval","amount":10000,
			"decision_point_outcome":{"type":"create_steps","step_names":["manager_approval","finance_review"]}}`},
	}
	for _, c := range cases {
		r := call(t, "conditional_approval.routing_decision", withInit(approvalThresholds),
			withContext(fmt.Sprintf(`{"amount":%d,"requester":"r","purpose":"p"}`, c.amount)))
		assertJSON(t, output(t, r), c.want)
	}
	// Thresholds come from handler.initialization.
	r := call(t, "conditional_approval.routing_decision", withInit(`{"small_amount_threshold":10,"large_amount_threshold":20}`),
		withContext(`{"amount":15}`))
	if got := path(t, output(t, r), "route_type"); got != "manager_only" {
		t.Errorf("custom thresholds route %v", got)
	}
	assertFailure(t, call(t, "conditional_approval.routing_decision", withContext(`{"amount":500.0}`)), "MISSING_AMOUNT", "DecisionError", false)
}

func TestValidateRequest(t *testing.T) {
	out := output(t, call(t, "conditional_approval.validate_request",
		withContext(`{"amount":500,"requester":"john.doe","purpose":"Office supplies purchase"}`)))
	assertJSON(t, out, `{"amount":500,"requester":"john.doe","purpose":"Office supplies purchase","validated_at":"2026-03-20T15:04:05Z"}`)
	for ctx, code := range map[string]string{
		`{"requester":"a","purpose":"b"}`:                "MISSING_AMOUNT",
		`{"amount":500.0,"requester":"a","purpose":"b"}`: "MISSING_AMOUNT", // tasker-core reads an i64
		`{"amount":0,"requester":"a","purpose":"b"}`:     "INVALID_AMOUNT",
		`{"amount":-5,"requester":"a","purpose":"b"}`:    "INVALID_AMOUNT",
		`{"amount":5,"purpose":"b"}`:                     "MISSING_REQUESTER",
		`{"amount":5,"requester":7,"purpose":"b"}`:       "MISSING_REQUESTER",
		`{"amount":5,"requester":"","purpose":"b"}`:      "EMPTY_REQUESTER",
		`{"amount":5,"requester":"a"}`:                   "MISSING_PURPOSE",
		`{"amount":5,"requester":"a","purpose":""}`:      "EMPTY_PURPOSE",
	} {
		assertFailure(t, call(t, "conditional_approval.validate_request", withContext(ctx)), code, "ValidationError", false)
	}
}

func TestApprovalsAndFinalize(t *testing.T) {
	ctx := withContext(`{"amount":10000,"requester":"bob.johnson","purpose":"Major infrastructure investment"}`)
	results := map[string][]byte{}
	for step, want := range map[string]string{
		"auto_approve":     `{"approved":true,"approval_type":"automatic","approved_amount":10000,"approved_by":"system","approved_at":"2026-03-20T15:04:05Z","notes":"Automatically approved - below manual review threshold"}`,
		"manager_approval": `{"approved":true,"approval_type":"manager","approved_amount":10000,"approved_by":"manager_rust_example","approved_at":"2026-03-20T15:04:05Z","notes":"Approved by manager - medium/large amount"}`,
		"finance_review":   `{"approved":true,"approval_type":"finance","approved_amount":10000,"approved_by":"finance_rust_example","approved_at":"2026-03-20T15:04:05Z","notes":"Approved by finance - large amount requiring dual approval"}`,
	} {
		results[step] = output(t, call(t, "conditional_approval."+step, ctx))
		assertJSON(t, results[step], want)
	}
	finalize := func(steps ...string) []byte {
		opts := []stepOpt{ctx, withDep("validate_request", `{}`), withDep("routing_decision", `{}`)}
		for _, s := range steps {
			opts = append(opts, withDep(s, string(results[s])))
		}
		return output(t, call(t, "conditional_approval.finalize_approval", opts...))
	}
	base := `"approved":true,"final_amount":10000,"requester":"bob.johnson","purpose":"Major infrastructure investment","finalized_at":"2026-03-20T15:04:05Z"`
	assertJSON(t, finalize("auto_approve"), `{`+base+`,"approval_chain":["automatic"],"approved_by":["system"],"approval_path":"auto"}`)
	assertJSON(t, finalize("manager_approval"), `{`+base+`,"approval_chain":["manager"],"approved_by":["manager_rust_example"],"approval_path":"manager_only"}`)
	assertJSON(t, finalize("manager_approval", "finance_review"),
		`{`+base+`,"approval_chain":["finance","manager"],"approved_by":["manager_rust_example","finance_rust_example"],"approval_path":"dual_approval"}`)
	assertJSON(t, finalize(), `{`+base+`,"approval_chain":[],"approved_by":[],"approval_path":"unknown"}`)
	// A dependency that did not approve is ignored.
	results["finance_review"] = []byte(`{"approved":false,"approval_type":"finance","approved_by":"x"}`)
	if got := path(t, finalize("manager_approval", "finance_review"), "approval_path"); got != "manager_only" {
		t.Errorf("path with a rejected finance review = %v", got)
	}
}
