// Command tasker is tasker-go's command line: migrations, templates, tasks, queues, and the
// worker and orchestrator processes. Its worker runs the example handlers and domain event
// publishers; build your own binary (see README) to run your handlers.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tasker-go/tasker/domainevents"
	exdomainevents "github.com/tasker-go/tasker/examples/domainevents"
	exhandlers "github.com/tasker-go/tasker/examples/handlers"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/internal/cli"
	"github.com/tasker-go/tasker/internal/cli/demo"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg := handlers.NewRegistry()
	pubs := domainevents.NewPublisherRegistry(slog.Default())
	if err := exhandlers.Register(reg); err != nil {
		fmt.Fprintln(os.Stderr, "tasker:", err)
		os.Exit(cli.ExitFailure)
	}
	if err := exdomainevents.Register(pubs); err != nil {
		fmt.Fprintln(os.Stderr, "tasker:", err)
		os.Exit(cli.ExitFailure)
	}
	// Fast (in-process) domain events are logged; durable ones go to <namespace>_domain_events.
	subs := domainevents.NewSubscriberRegistry()
	subs.MustRegister(domainevents.NewSubscriber("log", []string{"*"}, func(ctx context.Context, ev *domainevents.DomainEvent) error {
		slog.Info("domain event", "event", ev.EventName, "task_uuid", ev.Metadata.TaskUUID, "fired_by", ev.Metadata.FiredBy)
		return nil
	}))
	env := cli.Env{Registry: reg, Publishers: pubs, Subscribers: subs, Version: version}
	os.Exit(cli.Main(ctx, "tasker", os.Args[1:], env, demo.Command))
}
