// Package exhandlers implements the step handlers of the example task templates in
// examples/templates: Go ports of tasker-core's Rust example handlers (linear, diamond, tree and
// mixed-DAG arithmetic, order fulfillment, conditional approval, CSV and dataset batch
// processing, retry and permanent-failure injection, domain event publishing), with the same
// arithmetic, result shapes, error codes and error types. examples/templates/README.md lists
// the values each handler produces.
//
// One deliberate difference: the arithmetic workflows are exact. Where tasker-core's i64
// results wrap (or its u128 dag_finalize saturates), these return the exact value as a decimal
// string; results that fit in int64 are the same JSON integers tasker-core writes.
//
// Handlers are deterministic: they make no network calls, and the identifiers tasker-core draws
// at random (reservation, payment, shipment and tracking numbers, transaction and notification
// UUIDs) are derived from the step UUID instead. Timestamps come from the wall clock.
//
// Register adds every handler to a registry under its handler.callable:
//
//	reg := handlers.NewRegistry()
//	if err := exhandlers.Register(reg); err != nil { … }
package exhandlers

//go:generate go run ../data/gen -dir ../data
