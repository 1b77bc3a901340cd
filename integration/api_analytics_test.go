package integration

import (
	"encoding/json"
	"net/http"
	"regexp"
	"testing"

	"github.com/tasker-go/tasker/integration/testdb"
)

// Golden field tables: crates/tasker-shared/src/types/api/orchestration.rs (PerformanceMetrics,
// BottleneckAnalysis, SlowStepInfo, SlowTaskInfo, ResourceUtilization) and
// crates/tasker-shared/src/database/sql_functions.rs (SystemHealthCounts). Timestamps are
// chrono's to_rfc3339 ("+00:00").
var (
	perfFields = []apiField{
		{name: "total_tasks", typ: "integer", source: "orchestration.rs:PerformanceMetrics.total_tasks i64"},
		{name: "active_tasks", typ: "integer", source: "orchestration.rs:PerformanceMetrics.active_tasks i64"},
		{name: "completed_tasks", typ: "integer", source: "orchestration.rs:PerformanceMetrics.completed_tasks i64"},
		{name: "failed_tasks", typ: "integer", source: "orchestration.rs:PerformanceMetrics.failed_tasks i64"},
		{name: "completion_rate", typ: "number", source: "orchestration.rs:PerformanceMetrics.completion_rate f64"},
		{name: "error_rate", typ: "number", source: "orchestration.rs:PerformanceMetrics.error_rate f64"},
		{name: "average_task_duration_seconds", typ: "number", source: "orchestration.rs:PerformanceMetrics.average_task_duration_seconds f64"},
		{name: "average_step_duration_seconds", typ: "number", source: "orchestration.rs:PerformanceMetrics.average_step_duration_seconds f64"},
		{name: "tasks_per_hour", typ: "integer", source: "orchestration.rs:PerformanceMetrics.tasks_per_hour i64"},
		{name: "steps_per_hour", typ: "integer", source: "orchestration.rs:PerformanceMetrics.steps_per_hour i64"},
		{name: "system_health_score", typ: "number", source: "orchestration.rs:PerformanceMetrics.system_health_score f64"},
		{name: "analysis_period_start", typ: "string", source: "orchestration.rs:PerformanceMetrics.analysis_period_start String (to_rfc3339)"},
		{name: "calculated_at", typ: "string", source: "orchestration.rs:PerformanceMetrics.calculated_at String (to_rfc3339)"},
	}
	bottleneckFields = []apiField{
		{name: "slow_steps", typ: "array", source: "orchestration.rs:BottleneckAnalysis.slow_steps Vec<SlowStepInfo>"},
		{name: "slow_tasks", typ: "array", source: "orchestration.rs:BottleneckAnalysis.slow_tasks Vec<SlowTaskInfo>"},
		{name: "resource_utilization", typ: "object", source: "orchestration.rs:BottleneckAnalysis.resource_utilization ResourceUtilization"},
		{name: "recommendations", typ: "array", source: "orchestration.rs:BottleneckAnalysis.recommendations Vec<String>"},
	}
	slowStepFields = []apiField{
		{name: "namespace_name", typ: "string", source: "orchestration.rs:SlowStepInfo.namespace_name String"},
		{name: "task_name", typ: "string", source: "orchestration.rs:SlowStepInfo.task_name String"},
		{name: "version", typ: "string", source: "orchestration.rs:SlowStepInfo.version String"},
		{name: "step_name", typ: "string", source: "orchestration.rs:SlowStepInfo.step_name String"},
		{name: "average_duration_seconds", typ: "number", source: "orchestration.rs:SlowStepInfo.average_duration_seconds f64"},
		{name: "max_duration_seconds", typ: "number", source: "orchestration.rs:SlowStepInfo.max_duration_seconds f64"},
		{name: "execution_count", typ: "integer", source: "orchestration.rs:SlowStepInfo.execution_count i64"},
		{name: "error_count", typ: "integer", source: "orchestration.rs:SlowStepInfo.error_count i64"},
		{name: "error_rate", typ: "number", source: "orchestration.rs:SlowStepInfo.error_rate f64"},
		{name: "last_executed_at", typ: "string|null", source: "orchestration.rs:SlowStepInfo.last_executed_at Option<String>"},
	}
	slowTaskFields = []apiField{
		{name: "namespace_name", typ: "string", source: "orchestration.rs:SlowTaskInfo.namespace_name String"},
		{name: "task_name", typ: "string", source: "orchestration.rs:SlowTaskInfo.task_name String"},
		{name: "version", typ: "string", source: "orchestration.rs:SlowTaskInfo.version String"},
		{name: "average_duration_seconds", typ: "number", source: "orchestration.rs:SlowTaskInfo.average_duration_seconds f64"},
		{name: "max_duration_seconds", typ: "number", source: "orchestration.rs:SlowTaskInfo.max_duration_seconds f64"},
		{name: "execution_count", typ: "integer", source: "orchestration.rs:SlowTaskInfo.execution_count i64"},
		{name: "average_step_count", typ: "number", source: "orchestration.rs:SlowTaskInfo.average_step_count f64"},
		{name: "error_count", typ: "integer", source: "orchestration.rs:SlowTaskInfo.error_count i64"},
		{name: "error_rate", typ: "number", source: "orchestration.rs:SlowTaskInfo.error_rate f64"},
		{name: "last_executed_at", typ: "string|null", source: "orchestration.rs:SlowTaskInfo.last_executed_at Option<String>"},
	}
	resourceFields = []apiField{
		{name: "database_pool_utilization", typ: "number", source: "orchestration.rs:ResourceUtilization.database_pool_utilization f64"},
		{name: "system_health", typ: "object", source: "orchestration.rs:ResourceUtilization.system_health SystemHealthCounts"},
	}
	rfc3339RE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00$`)
)

func healthFields() []apiField {
	var out []apiField
	for _, n := range []string{"pending_tasks", "initializing_tasks", "enqueuing_steps_tasks", "steps_in_process_tasks",
		"evaluating_results_tasks", "waiting_for_dependencies_tasks", "waiting_for_retry_tasks", "blocked_by_failures_tasks",
		"complete_tasks", "error_tasks", "cancelled_tasks", "resolved_manually_tasks", "total_tasks", "pending_steps",
		"enqueued_steps", "in_progress_steps", "enqueued_for_orchestration_steps", "enqueued_as_error_for_orchestration_steps",
		"waiting_for_retry_steps", "complete_steps", "error_steps", "cancelled_steps", "resolved_manually_steps", "total_steps"} {
		out = append(out, apiField{name: n, typ: "integer", source: "sql_functions.rs:SystemHealthCounts." + n + " i64"})
	}
	return out
}

func anNum(t *testing.T, v any) float64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v is not a number", v)
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAPIAnalyticsPerformance(t *testing.T) {
	_, pool := testdb.New(t)
	d := fnSetup(t, pool)
	srv := apiServer(t, pool, d.o)

	m := dlqGetObj(t, srv, "/v1/analytics/performance")
	apiCheckFields(t, "PerformanceMetrics", m, perfFields)
	want := map[string]float64{"total_tasks": 3, "active_tasks": 1, "completed_tasks": 2, "failed_tasks": 1,
		"completion_rate": 66.67, "error_rate": 33.33, "average_task_duration_seconds": 4,
		"average_step_duration_seconds": 3.667, "tasks_per_hour": 3, "steps_per_hour": 6, "system_health_score": 0.667}
	for k, w := range want {
		if got := anNum(t, m[k]); got != w {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	for _, k := range []string{"analysis_period_start", "calculated_at"} {
		if !rfc3339RE.MatchString(m[k].(string)) {
			t.Errorf("%s = %q is not chrono's to_rfc3339", k, m[k])
		}
	}
	// hours=0 uses the function's default period (the last hour); a period that excludes the
	// tasks has no throughput.
	m = dlqGetObj(t, srv, "/v1/analytics/performance?hours=0")
	if anNum(t, m["tasks_per_hour"]) != 3 {
		t.Errorf("hours=0: %v", m)
	}
	for _, q := range []string{"hours=abc", "hours=-1", "hours=4294967296"} {
		st, b := apiDoS(t, srv, "GET", "/v1/analytics/performance?"+q)
		apiWantError(t, q, st, b, http.StatusBadRequest, "BAD_REQUEST", "")
	}
}

func TestAPIAnalyticsBottlenecks(t *testing.T) {
	_, pool := testdb.New(t)
	d := fnSetup(t, pool)
	srv := apiServer(t, pool, d.o)

	b := dlqGetObj(t, srv, "/v1/analytics/bottlenecks?limit=10&min_executions=1")
	apiCheckFields(t, "BottleneckAnalysis", b, bottleneckFields)
	steps := b["slow_steps"].([]any)
	if len(steps) != 2 {
		t.Fatalf("slow_steps = %v", steps)
	}
	for i, w := range []struct {
		name          string
		avg, max      float64
		count, errors float64
		rate          float64
	}{{"beta", 5, 7, 2, 1, 0.5}, {"alpha", 4, 6, 2, 0, 0}} {
		s := steps[i].(map[string]any)
		apiCheckFields(t, "SlowStepInfo", s, slowStepFields)
		if s["step_name"] != w.name || s["namespace_name"] != "fnq" || s["task_name"] != "fn_task" || s["version"] != "1.0.0" ||
			anNum(t, s["average_duration_seconds"]) != w.avg || anNum(t, s["max_duration_seconds"]) != w.max ||
			anNum(t, s["execution_count"]) != w.count || anNum(t, s["error_count"]) != w.errors ||
			anNum(t, s["error_rate"]) != w.rate || !rfc3339RE.MatchString(s["last_executed_at"].(string)) {
			t.Errorf("slow_steps[%d] = %v", i, s)
		}
	}
	tasks := b["slow_tasks"].([]any)
	if len(tasks) != 1 {
		t.Fatalf("slow_tasks = %v", tasks)
	}
	st := tasks[0].(map[string]any)
	apiCheckFields(t, "SlowTaskInfo", st, slowTaskFields)
	if anNum(t, st["average_duration_seconds"]) != 6 || anNum(t, st["max_duration_seconds"]) != 8 ||
		anNum(t, st["execution_count"]) != 2 || anNum(t, st["average_step_count"]) != 2 ||
		anNum(t, st["error_count"]) != 1 || anNum(t, st["error_rate"]) != 0.5 {
		t.Errorf("slow_tasks[0] = %v", st)
	}
	ru := b["resource_utilization"].(map[string]any)
	apiCheckFields(t, "ResourceUtilization", ru, resourceFields)
	if u := anNum(t, ru["database_pool_utilization"]); u < 0 || u > 1 {
		t.Errorf("database_pool_utilization = %v", u)
	}
	h := ru["system_health"].(map[string]any)
	apiCheckFields(t, "SystemHealthCounts", h, healthFields())
	if anNum(t, h["total_tasks"]) != 3 || anNum(t, h["steps_in_process_tasks"]) != 3 || anNum(t, h["total_steps"]) != 6 ||
		anNum(t, h["complete_steps"]) != 3 || anNum(t, h["error_steps"]) != 1 {
		t.Errorf("system_health = %v", h)
	}
	recs := b["recommendations"].([]any)
	if len(recs) != 1 || recs[0] != "High error rate detected (50.0%). Review error handling and retry logic." {
		t.Errorf("recommendations = %q", recs)
	}

	// tasker-core's defaults: min_executions 5, so nothing qualifies yet; arrays stay arrays.
	b = dlqGetObj(t, srv, "/v1/analytics/bottlenecks")
	if len(b["slow_steps"].([]any)) != 0 || len(b["slow_tasks"].([]any)) != 0 || len(b["recommendations"].([]any)) != 0 {
		t.Errorf("default bottlenecks = %v", b)
	}
	b = dlqGetObj(t, srv, "/v1/analytics/bottlenecks?limit=1&min_executions=1")
	if s := b["slow_steps"].([]any); len(s) != 1 || s[0].(map[string]any)["step_name"] != "beta" {
		t.Errorf("limit=1 slow_steps = %v", s)
	}
	for _, q := range []string{"limit=x", "min_executions=-1", "limit=2147483648"} {
		st, body := apiDoS(t, srv, "GET", "/v1/analytics/bottlenecks?"+q)
		apiWantError(t, q, st, body, http.StatusBadRequest, "BAD_REQUEST", "")
	}
}
