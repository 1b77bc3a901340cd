package worker

import (
	"time"

	"github.com/tasker-go/tasker/state"
)

// claimAction is what the slow-path claim does with a message whose step it has locked and read.
type claimAction int

const (
	// actClaim: the step is enqueued (or legacy pending); claim it and run its handler.
	actClaim claimAction = iota
	// actLeave: another worker runs the step and may still be alive; leave the message alone.
	actLeave
	// actRecover: the step has been in_progress longer than its timeout plus the grace; its
	// worker is presumed dead, so report a retryable timeout through the legal path.
	actRecover
	// actArchive: the step is in no state a message can act on (finished, waiting for
	// orchestration, ...): archive the message as not claimable.
	actArchive
)

func (a claimAction) String() string {
	return [...]string{"claim", "leave", "recover", "archive"}[a]
}

// decideClaim is the slow path's decision for a step in state cur whose last attempt started
// age ago (negative: never attempted), with timeout and grace. It is pure: the caller holds the
// step's row lock, so the state cannot move while it acts on the answer. A step in_progress with
// no attempt recorded counts as abandoned: no live claim leaves it so.
func decideClaim(cur state.StepState, age, timeout, grace time.Duration) claimAction {
	switch {
	case cur.IsClaimable():
		return actClaim
	case cur == state.StepInProgress:
		if age >= 0 && age < timeout+grace {
			return actLeave
		}
		return actRecover
	default:
		return actArchive
	}
}
