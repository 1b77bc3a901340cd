// Command tasker-orchestrator runs the Go orchestration core (the same as `tasker orchestrator`).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tasker-go/tasker/internal/cli"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.RunCommand(ctx, "tasker-orchestrator", "orchestrator", os.Args[1:], cli.Env{Version: version}))
}
