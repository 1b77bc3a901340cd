// Package integration holds tests that run against a real PostgreSQL server (see testdb).
package integration

import (
	"os"
	"testing"

	"github.com/tasker-go/tasker/integration/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }
