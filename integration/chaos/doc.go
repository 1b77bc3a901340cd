// Package chaos holds the fault-injection tests of tasker-go (chaos_test.go): PostgreSQL, two
// orchestrators and four workers in Docker on a private network, a mixed load of example
// workflows, and SIGKILLed workers, a PostgreSQL restart, a network partition, a silent packet
// drop (old flows stay dead after it), a process freeze, duplicate and
// malformed queue messages while it runs; the invariants are checked at the end from the
// database and the probe records (package probe), and a report is written.
//
// TASKER_CHAOS selects the run: "full" (make test-chaos), "reduced" (the default when a Docker
// engine is reachable; what `go test ./...` runs), or "off". TASKER_CHAOS_OUT names the
// directory for the report (report.md, report.json), the container logs and activity.log (long
// statements sampled every 2s); TASKER_CHAOS_TASKS overrides the number of tasks;
// TASKER_CHAOS_VERBOSE=1 keeps testcontainers' log; TASKER_APP_IMAGE names the app image, built
// by scripts/build-app-image.sh at every run unless TASKER_CHAOS_SKIP_BUILD=1 and it exists.
package chaos
