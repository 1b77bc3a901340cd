// Command tasker is tasker-go's command line: migrations, templates, tasks, queues, and the
// worker and orchestrator processes. Its worker runs the example handlers; build your own binary
// (see README) to run your handlers.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	exhandlers "github.com/tasker-go/tasker/examples/handlers"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/internal/cli"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg := handlers.NewRegistry()
	if err := exhandlers.Register(reg); err != nil {
		panic(err)
	}
	os.Exit(cli.Main(ctx, "tasker", os.Args[1:], cli.Env{Registry: reg, Version: version}))
}
