package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"github.com/spf13/pflag"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/client"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/state"
)

// apiFlags choose where the task, step and dlq commands act: the orchestrator at --url
// (TASKER_API_URL) over its REST API, or, without a URL, the database directly (--database-url,
// DATABASE_URL) through the same API handlers run in-process, so both print the same.
type apiFlags struct {
	url, token, apiKey, dbURL string
}

// registerPersistent adds --url, --token and --api-key to a command group.
func (f *apiFlags) registerPersistent(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "url", "", "talk to the orchestrator's REST API at this URL instead of the database (default $TASKER_API_URL)")
	fs.StringVar(&f.token, "token", "", "with --url: bearer token sent as Authorization: Bearer (default $TASKER_API_TOKEN)")
	fs.StringVar(&f.apiKey, "api-key", "", "with --url: API key sent as X-API-Key (default $TASKER_API_KEY)")
}

// registerDB adds --database-url (for the direct path) to a command group.
func (f *apiFlags) registerDB(fs *pflag.FlagSet) {
	fs.StringVar(&f.dbURL, "database-url", "", "PostgreSQL URL when --url is not given (default $DATABASE_URL)")
}

func (f *apiFlags) resolved(env Env) apiFlags {
	r := *f
	for _, p := range []struct {
		dst *string
		env string
	}{{&r.url, "TASKER_API_URL"}, {&r.token, "TASKER_API_TOKEN"}, {&r.apiKey, "TASKER_API_KEY"}} {
		if *p.dst == "" {
			*p.dst = env.Getenv(p.env)
		}
	}
	return r
}

// isRemote reports whether the commands talk to an orchestrator over HTTP.
func (f *apiFlags) isRemote(env Env) bool { return f.resolved(env).url != "" }

// withAPI hands fn a client of the remote orchestrator, or of the API served in-process over
// the database, and maps the API's errors to the CLI's exit codes.
func withAPI(ctx context.Context, env Env, f *apiFlags, fn func(c *client.Client) error) error {
	r := f.resolved(env)
	var opts []client.Option
	if r.token != "" {
		opts = append(opts, client.WithToken(r.token))
	}
	if r.apiKey != "" {
		opts = append(opts, client.WithAPIKey(r.apiKey))
	}
	if r.url != "" {
		c, err := client.New(r.url, opts...)
		if err != nil {
			return &ConfigError{fmt.Errorf("--url: %w", err)}
		}
		return apiErr(fn(c))
	}
	pool, err := connect(ctx, env, r.dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	log := Logger(env, "warn")
	o, err := newOrchestrator(orchestration.DefaultConfig(), pool, log)
	if err != nil {
		return err
	}
	a, err := api.New(o, pool, api.Options{Logger: log})
	if err != nil {
		return &ConfigError{err}
	}
	mux := http.NewServeMux()
	a.Mount(mux)
	return apiErr(fn(client.NewLocal(mux)))
}

// apiErr maps an API error to the CLI's errors: 404 not found (exit 5), 409 duplicate (6), 400
// and 422 bad request (2), 401 and 403 with what is missing (1).
func apiErr(err error) error {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return err
	}
	msg := ae.Message
	switch ae.Status {
	case http.StatusNotFound:
		return &notFoundError{errors.New(msg)}
	case http.StatusConflict:
		return &duplicateError{err: errors.New(msg)}
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return &usageError{msg}
	case http.StatusUnauthorized:
		return fmt.Errorf("not authenticated (HTTP 401: %s): give a token (--token or TASKER_API_TOKEN) or an API key (--api-key or TASKER_API_KEY)", msg)
	case http.StatusForbidden:
		return fmt.Errorf("permission denied (HTTP 403): %s", msg)
	}
	return fmt.Errorf("orchestrator API: %w", err)
}

// taskNotFound makes a 404 answer about task id read as the direct path's error.
func taskNotFound(err error, id uuid.UUID) error {
	if client.IsStatus(err, http.StatusNotFound) {
		return &notFoundError{fmt.Errorf("%w: %s", orchestration.ErrTaskNotFound, id)}
	}
	return err
}

// output is a listing's -o json|table (and --json, its alias where the command had it).
type output struct {
	format string
	json   bool
}

func (o *output) register(fs *pflag.FlagSet, jsonAlias bool) {
	fs.VarP(&enumValue{value: &o.format, allowed: []string{"table", "json"}}, "output", "o",
		"output format (table|json); json prints the REST API's JSON")
	o.format = "table"
	if jsonAlias {
		fs.BoolVar(&o.json, "json", false, "same as -o json")
	}
}

func (o output) isJSON() bool { return o.json || o.format == "json" }

// printJSON writes an API body indented, as received.
func printJSON(env Env, raw json.RawMessage) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("API answered invalid JSON: %w", err)
	}
	_, err := env.Stdout.Write(append(bytes.TrimSpace(b.Bytes()), '\n'))
	return err
}

// runRemoteSubmit is task submit with --url: POST /v1/tasks, then with --wait the same progress
// and status as the direct path, read from the API.
func runRemoteSubmit(ctx context.Context, env Env, f *apiFlags, opts submitOptions) error {
	if opts.isNDJSON() {
		return usagef("NDJSON (bulk) submission needs the database; it is not available with --url")
	}
	req, err := buildRequest(env.Stdin, opts.file, opts.namespace, opts.name, opts.version, opts.context)
	if err != nil {
		return err
	}
	if opts.idempotencyKey != "" {
		key := opts.idempotencyKey
		req.IdempotencyKey = &key
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode task request: %w", err)
	}
	return withAPI(ctx, env, f, func(c *client.Client) error {
		created, _, err := c.CreateTask(ctx, body)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, created.TaskUUID)
		if !opts.wait {
			return nil
		}
		id, err := uuid.Parse(created.TaskUUID)
		if err != nil {
			return fmt.Errorf("API answered task uuid %q: %w", created.TaskUUID, err)
		}
		wctx, cancel := context.WithTimeout(ctx, opts.timeout)
		defer cancel()
		var parents map[uuid.UUID][]uuid.UUID
		st, err := watchTask(wctx, func() (*orchestration.TaskStatus, error) {
			st, p, err := remoteStatus(wctx, c, id)
			parents = p
			return st, err
		}, id, env.Stderr)
		if err != nil {
			return err
		}
		printStatusTree(env.Stdout, st, parents)
		if st.State != state.TaskComplete {
			return fmt.Errorf("%w: %s", ErrTaskFailed, st.State)
		}
		return nil
	})
}
