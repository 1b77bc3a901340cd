package domainevents

import "github.com/tasker-go/tasker/worker"

// The worker's consumer-side interfaces that StepPublisher satisfies (checked here, so that
// the package itself does not import worker).
var (
	_ worker.EventPublisher = (*StepPublisher)(nil)
	_ worker.DurableDecider = (*StepPublisher)(nil)
)
