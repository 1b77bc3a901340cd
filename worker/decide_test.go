package worker

import (
	"testing"
	"time"

	"github.com/tasker-go/tasker/state"
)

func TestDecideClaim(t *testing.T) {
	const timeout, grace = 30 * time.Second, 10 * time.Second
	for _, tc := range []struct {
		name string
		cur  state.StepState
		age  time.Duration
		want claimAction
	}{
		{"enqueued", state.StepEnqueued, -1, actClaim},
		{"legacy pending", state.StepPending, -1, actClaim},
		{"in progress, young", state.StepInProgress, 5 * time.Second, actLeave},
		{"in progress, just inside timeout + grace", state.StepInProgress, timeout + grace - time.Millisecond, actLeave},
		{"in progress, at timeout + grace", state.StepInProgress, timeout + grace, actRecover},
		{"in progress, old", state.StepInProgress, 5 * time.Minute, actRecover},
		{"in progress, never attempted", state.StepInProgress, -1, actRecover},
		{"awaiting orchestration (a duplicate)", state.StepEnqueuedForOrchestration, time.Second, actArchive},
		{"awaiting orchestration as error", state.StepEnqueuedAsErrorForOrchestration, time.Second, actArchive},
		{"complete", state.StepComplete, time.Hour, actArchive},
		{"error", state.StepError, time.Hour, actArchive},
		{"waiting for retry", state.StepWaitingForRetry, time.Second, actArchive},
		{"cancelled", state.StepCancelled, time.Second, actArchive},
		{"resolved manually", state.StepResolvedManually, time.Second, actArchive},
	} {
		if got := decideClaim(tc.cur, tc.age, timeout, grace); got != tc.want {
			t.Errorf("%s: decideClaim(%s, %s) = %s, want %s", tc.name, tc.cur, tc.age, got, tc.want)
		}
	}
}
