package exhandlers

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/tasker-go/tasker/handlers"
)

// entry is one handler under its handler.callable.
type entry struct {
	callable string
	handler  handlers.Handler
}

func all() []entry {
	var out []entry
	for _, group := range [][]entry{
		mathHandlers(),
		orderHandlers(),
		approvalHandlers(),
		csvHandlers(),
		datasetHandlers(),
		errorInjectionHandlers(),
		domainEventHandlers(),
	} {
		out = append(out, group...)
	}
	return out
}

// Register adds every example handler to r under its handler.callable (see Callables). It
// fails, wrapping the registry's error, if a callable is already registered.
func Register(r *handlers.Registry) error {
	for _, e := range all() {
		if err := r.Register(e.callable, e.handler); err != nil {
			return fmt.Errorf("exhandlers: register %s: %w", e.callable, err)
		}
	}
	return nil
}

// Callables lists the handler.callable names Register adds, in registration order.
func Callables() []string {
	entries := all()
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.callable
	}
	return names
}

// DataDir returns the absolute path of examples/data (products.csv, products_empty.csv) in the
// source tree this package was built from, for tests and local runs that submit the CSV batch
// scenario. It returns "" when that directory does not exist (e.g. in a deployed binary).
func DataDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	dir := filepath.Join(filepath.Dir(file), "..", "data")
	if _, err := os.Stat(filepath.Join(dir, "products.csv")); err != nil {
		return ""
	}
	return dir
}
