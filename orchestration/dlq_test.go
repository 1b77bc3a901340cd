package orchestration

import (
	"errors"
	"testing"
	"time"
)

func TestStalenessConfigDefaultsAndValidation(t *testing.T) {
	c := StalenessConfig{}.withDefaults()
	if c.BatchSize != 100 || c.WaitingForDependencies != time.Hour || c.WaitingForRetry != 30*time.Minute ||
		c.StepsInProcess != 30*time.Minute || c.TaskMaxLifetime != 24*time.Hour || c.Disabled || c.DryRun {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	bad := c
	bad.WaitingForRetry = 30 * time.Second
	var ce *ConfigError
	if err := bad.validate(); !errors.As(err, &ce) || ce.Field != "Staleness.WaitingForRetry" {
		t.Errorf("30s threshold: %v", err)
	}
	bad = c
	bad.TaskMaxLifetime = -time.Hour
	if err := bad.validate(); !errors.As(err, &ce) || ce.Field != "Staleness.TaskMaxLifetime" {
		t.Errorf("negative lifetime: %v", err)
	}
	if DefaultConfig().Staleness != c {
		t.Errorf("Config defaults Staleness to %+v", DefaultConfig().Staleness)
	}
}
