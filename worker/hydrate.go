package worker

import (
	"errors"

	"github.com/tasker-go/tasker/template"
)

// errTaskMismatch is a reason to drop a message: retrying cannot help.
var errTaskMismatch = errors.New("message task_uuid does not own the step")

// noDefinition reports errors of the template cache that no retry can cure: the template does
// not describe the step, or the named task has no template at all.
func noDefinition(err error) bool {
	return errors.Is(err, template.ErrNoStepDefinition) || errors.Is(err, template.ErrNoConfiguration)
}
