package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
)

func (a *API) mountAnalytics(mux *http.ServeMux) {
	a.handle(mux, Route{Method: "GET", Path: "/v1/analytics/performance", Resource: "system", Action: "analytics_read",
		Tag: "analytics", Summary: "Performance metrics over a period", Query: []Param{{Name: "hours", Type: "integer"}},
		Responses: []Response{{http.StatusOK, "Metrics", performanceMetrics{}}, {http.StatusBadRequest, "Invalid query", nil}}}, a.performanceMetrics)
	a.handle(mux, Route{Method: "GET", Path: "/v1/analytics/bottlenecks", Resource: "system", Action: "analytics_read",
		Tag: "analytics", Summary: "Slowest step and task templates, pool use, health counts, recommendations",
		Query:     []Param{{Name: "limit", Type: "integer"}, {Name: "min_executions", Type: "integer"}},
		Responses: []Response{{http.StatusOK, "Analysis", bottleneckAnalysis{}}, {http.StatusBadRequest, "Invalid query", nil}}}, a.bottlenecks)
}

// rfc3339 is chrono's DateTime<Utc>::to_rfc3339: "+00:00" and 0, 3, 6 or 9 fraction digits.
type rfc3339 time.Time

func (t rfc3339) String() string { return protocol.RFC3339(time.Time(t)) }

func rfc3339Ptr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := rfc3339(*t).String()
	return &s
}

// performanceMetrics is tasker-core's PerformanceMetrics.
type performanceMetrics struct {
	TotalTasks                 int64   `json:"total_tasks"`
	ActiveTasks                int64   `json:"active_tasks"`
	CompletedTasks             int64   `json:"completed_tasks"`
	FailedTasks                int64   `json:"failed_tasks"`
	CompletionRate             float64 `json:"completion_rate"`
	ErrorRate                  float64 `json:"error_rate"`
	AverageTaskDurationSeconds float64 `json:"average_task_duration_seconds"`
	AverageStepDurationSeconds float64 `json:"average_step_duration_seconds"`
	TasksPerHour               int64   `json:"tasks_per_hour"`
	StepsPerHour               int64   `json:"steps_per_hour"`
	SystemHealthScore          float64 `json:"system_health_score"`
	AnalysisPeriodStart        string  `json:"analysis_period_start"`
	CalculatedAt               string  `json:"calculated_at"`
}

// performanceMetrics: GET /v1/analytics/performance?hours=24. The period covers the tasks
// created in the last hours (0: tasker.get_analytics_metrics' default, the last hour);
// tasks_per_hour and steps_per_hour are the period's task and step counts, as in tasker-core.
func (a *API) performanceMetrics(w http.ResponseWriter, r *http.Request) {
	hours, aerr := paramInt(r, "hours", 24, 0)
	if aerr == nil && hours > 1<<32-1 {
		aerr = &apiError{http.StatusBadRequest, "BAD_REQUEST", "Invalid query parameter hours: out of range"}
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var since *time.Time
	if hours > 0 {
		t := time.Now().Add(-time.Duration(hours) * time.Hour)
		since = &t
	}
	var m performanceMetrics
	var start, calculated time.Time
	err := a.pool.QueryRow(r.Context(), `SELECT m.active_tasks_count, m.completion_count, m.error_count,
		       m.completion_rate::float8, m.error_rate::float8, m.avg_task_duration::float8,
		       m.avg_step_duration::float8, m.task_throughput, m.step_throughput,
		       m.system_health_score::float8, m.analysis_period_start, m.calculated_at,
		       (SELECT count(*) FROM tasker.tasks)
		  FROM tasker.get_analytics_metrics($1) m`, since).Scan(
		&m.ActiveTasks, &m.CompletedTasks, &m.FailedTasks, &m.CompletionRate, &m.ErrorRate,
		&m.AverageTaskDurationSeconds, &m.AverageStepDurationSeconds, &m.TasksPerHour, &m.StepsPerHour,
		&m.SystemHealthScore, &start, &calculated, &m.TotalTasks)
	if err != nil {
		a.dbFailure(w, r, "Operation failed: performance metrics", err)
		return
	}
	m.AnalysisPeriodStart, m.CalculatedAt = rfc3339(start).String(), rfc3339(calculated).String()
	writeJSON(w, http.StatusOK, m)
}

// slowStepInfo is tasker-core's SlowStepInfo.
type slowStepInfo struct {
	NamespaceName          string  `json:"namespace_name"`
	TaskName               string  `json:"task_name"`
	Version                string  `json:"version"`
	StepName               string  `json:"step_name"`
	AverageDurationSeconds float64 `json:"average_duration_seconds"`
	MaxDurationSeconds     float64 `json:"max_duration_seconds"`
	ExecutionCount         int64   `json:"execution_count"`
	ErrorCount             int64   `json:"error_count"`
	ErrorRate              float64 `json:"error_rate"`
	LastExecutedAt         *string `json:"last_executed_at"`
}

// slowTaskInfo is tasker-core's SlowTaskInfo.
type slowTaskInfo struct {
	NamespaceName          string  `json:"namespace_name"`
	TaskName               string  `json:"task_name"`
	Version                string  `json:"version"`
	AverageDurationSeconds float64 `json:"average_duration_seconds"`
	MaxDurationSeconds     float64 `json:"max_duration_seconds"`
	ExecutionCount         int64   `json:"execution_count"`
	AverageStepCount       float64 `json:"average_step_count"`
	ErrorCount             int64   `json:"error_count"`
	ErrorRate              float64 `json:"error_rate"`
	LastExecutedAt         *string `json:"last_executed_at"`
}

// systemHealthCounts is tasker-core's SystemHealthCounts (tasker.get_system_health_counts).
type systemHealthCounts struct {
	PendingTasks                         int64 `json:"pending_tasks"`
	InitializingTasks                    int64 `json:"initializing_tasks"`
	EnqueuingStepsTasks                  int64 `json:"enqueuing_steps_tasks"`
	StepsInProcessTasks                  int64 `json:"steps_in_process_tasks"`
	EvaluatingResultsTasks               int64 `json:"evaluating_results_tasks"`
	WaitingForDependenciesTasks          int64 `json:"waiting_for_dependencies_tasks"`
	WaitingForRetryTasks                 int64 `json:"waiting_for_retry_tasks"`
	BlockedByFailuresTasks               int64 `json:"blocked_by_failures_tasks"`
	CompleteTasks                        int64 `json:"complete_tasks"`
	ErrorTasks                           int64 `json:"error_tasks"`
	CancelledTasks                       int64 `json:"cancelled_tasks"`
	ResolvedManuallyTasks                int64 `json:"resolved_manually_tasks"`
	TotalTasks                           int64 `json:"total_tasks"`
	PendingSteps                         int64 `json:"pending_steps"`
	EnqueuedSteps                        int64 `json:"enqueued_steps"`
	InProgressSteps                      int64 `json:"in_progress_steps"`
	EnqueuedForOrchestrationSteps        int64 `json:"enqueued_for_orchestration_steps"`
	EnqueuedAsErrorForOrchestrationSteps int64 `json:"enqueued_as_error_for_orchestration_steps"`
	WaitingForRetrySteps                 int64 `json:"waiting_for_retry_steps"`
	CompleteSteps                        int64 `json:"complete_steps"`
	ErrorSteps                           int64 `json:"error_steps"`
	CancelledSteps                       int64 `json:"cancelled_steps"`
	ResolvedManuallySteps                int64 `json:"resolved_manually_steps"`
	TotalSteps                           int64 `json:"total_steps"`
}

// resourceUtilization is tasker-core's ResourceUtilization.
type resourceUtilization struct {
	DatabasePoolUtilization float64            `json:"database_pool_utilization"`
	SystemHealth            systemHealthCounts `json:"system_health"`
}

// bottleneckAnalysis is tasker-core's BottleneckAnalysis.
type bottleneckAnalysis struct {
	SlowSteps           []slowStepInfo      `json:"slow_steps"`
	SlowTasks           []slowTaskInfo      `json:"slow_tasks"`
	ResourceUtilization resourceUtilization `json:"resource_utilization"`
	Recommendations     []string            `json:"recommendations"`
}

// bottlenecks: GET /v1/analytics/bottlenecks?limit=10&min_executions=5, over the last 24
// hours: the slowest step and task templates (tasker.get_slowest_*_aggregated), the database
// pool's utilization, the system health counts and tasker-core's recommendations.
func (a *API) bottlenecks(w http.ResponseWriter, r *http.Request) {
	limit, aerr := paramInt(r, "limit", 10, 0)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	minExec, aerr := paramInt(r, "min_executions", 5, 0)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if limit > 1<<31-1 || minExec > 1<<31-1 {
		writeError(w, &apiError{http.StatusBadRequest, "BAD_REQUEST", "Invalid query parameter: out of range"})
		return
	}
	res, err := a.analyzeBottlenecks(r.Context(), int32(limit), int32(minExec))
	if err != nil {
		a.dbFailure(w, r, "Operation failed: bottleneck analysis", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *API) analyzeBottlenecks(ctx context.Context, limit, minExec int32) (*bottleneckAnalysis, error) {
	rows, err := a.pool.Query(ctx, `SELECT namespace_name, task_name, version, step_name,
		average_duration_seconds::float8, max_duration_seconds::float8, execution_count, error_count,
		error_rate::float8, last_executed_at
		FROM tasker.get_slowest_steps_aggregated(NULL::timestamptz, $1, $2, NULL, NULL, NULL)`, limit, minExec)
	if err != nil {
		return nil, err
	}
	steps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (slowStepInfo, error) {
		var s slowStepInfo
		var last *time.Time
		err := row.Scan(&s.NamespaceName, &s.TaskName, &s.Version, &s.StepName, &s.AverageDurationSeconds,
			&s.MaxDurationSeconds, &s.ExecutionCount, &s.ErrorCount, &s.ErrorRate, &last)
		s.LastExecutedAt = rfc3339Ptr(last)
		return s, err
	})
	if err != nil {
		return nil, err
	}
	rows, err = a.pool.Query(ctx, `SELECT namespace_name, task_name, version,
		average_duration_seconds::float8, max_duration_seconds::float8, execution_count,
		average_step_count::float8, total_error_steps, error_rate::float8, last_executed_at
		FROM tasker.get_slowest_tasks_aggregated(NULL::timestamptz, $1, $2, NULL, NULL, NULL)`, limit, minExec)
	if err != nil {
		return nil, err
	}
	tasks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (slowTaskInfo, error) {
		var t slowTaskInfo
		var last *time.Time
		err := row.Scan(&t.NamespaceName, &t.TaskName, &t.Version, &t.AverageDurationSeconds,
			&t.MaxDurationSeconds, &t.ExecutionCount, &t.AverageStepCount, &t.ErrorCount, &t.ErrorRate, &last)
		t.LastExecutedAt = rfc3339Ptr(last)
		return t, err
	})
	if err != nil {
		return nil, err
	}
	var h systemHealthCounts
	if err := a.pool.QueryRow(ctx, `SELECT * FROM tasker.get_system_health_counts()`).Scan(
		&h.PendingTasks, &h.InitializingTasks, &h.EnqueuingStepsTasks, &h.StepsInProcessTasks,
		&h.EvaluatingResultsTasks, &h.WaitingForDependenciesTasks, &h.WaitingForRetryTasks,
		&h.BlockedByFailuresTasks, &h.CompleteTasks, &h.ErrorTasks, &h.CancelledTasks,
		&h.ResolvedManuallyTasks, &h.TotalTasks, &h.PendingSteps, &h.EnqueuedSteps, &h.InProgressSteps,
		&h.EnqueuedForOrchestrationSteps, &h.EnqueuedAsErrorForOrchestrationSteps, &h.WaitingForRetrySteps,
		&h.CompleteSteps, &h.ErrorSteps, &h.CancelledSteps, &h.ResolvedManuallySteps, &h.TotalSteps); err != nil {
		return nil, err
	}
	res := &bottleneckAnalysis{
		SlowSteps: emptyIfNil(steps),
		SlowTasks: emptyIfNil(tasks),
		ResourceUtilization: resourceUtilization{
			DatabasePoolUtilization: a.poolUtilization(),
			SystemHealth:            h,
		},
	}
	res.Recommendations = recommendations(res.SlowSteps, res.ResourceUtilization.DatabasePoolUtilization)
	return res, nil
}

// poolUtilization is the share of the pool's open connections that are in use.
func (a *API) poolUtilization() float64 {
	st := a.pool.Stat()
	if st.TotalConns() == 0 {
		return 0
	}
	return float64(st.TotalConns()-st.IdleConns()) / float64(st.TotalConns())
}

// recommendations are tasker-core's bottleneck hints: a slow step's error rate above 20%, pool
// utilization above 80%, and the slowest step averaging more than 30 seconds.
func recommendations(steps []slowStepInfo, poolUtil float64) []string {
	out := []string{}
	highest := 0.0
	for _, s := range steps {
		highest = max(highest, s.ErrorRate)
	}
	if highest > 0.2 {
		out = append(out, fmt.Sprintf("High error rate detected (%.1f%%). Review error handling and retry logic.", highest*100))
	}
	if poolUtil > 0.8 {
		out = append(out, fmt.Sprintf("Database pool utilization is high (%.0f%%). Consider increasing pool size or optimizing queries.", poolUtil*100))
	}
	if len(steps) > 0 && steps[0].AverageDurationSeconds > 30 {
		s := steps[0]
		out = append(out, fmt.Sprintf("Step '%s/%s@%s::%s' averages %.1fs. Consider optimization or timeout adjustment.",
			s.NamespaceName, s.TaskName, s.Version, s.StepName, s.AverageDurationSeconds))
	}
	return out
}
