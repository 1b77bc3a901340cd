// Command tasker-worker runs a tasker-go worker with the example handlers (the same as
// `tasker worker`). It is also the template for your own worker binary: register your handlers
// in a handlers.Registry and call worker.New / Run (see README, "Writing handlers").
package main

import (
	"context"
	"fmt"
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
		fmt.Fprintln(os.Stderr, "tasker-worker:", err)
		os.Exit(cli.ExitFailure)
	}
	os.Exit(cli.RunCommand(ctx, "tasker-worker", "worker", os.Args[1:], cli.Env{Registry: reg, Version: version}))
}
