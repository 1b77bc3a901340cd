package cli

import (
	"context"
	"errors"
)

// Filled in once the orchestration package lands (same session).
var errNotWired = errors.New("not wired yet")

func runOrchestrator(ctx context.Context, env Env, args []string) error { return errNotWired }
func runDev(ctx context.Context, env Env, args []string) error          { return errNotWired }
func runTask(ctx context.Context, env Env, args []string) error         { return errNotWired }
func runDemo(ctx context.Context, env Env, args []string) error         { return errNotWired }
