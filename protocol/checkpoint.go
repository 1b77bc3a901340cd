package protocol

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// CheckpointYieldData is what a handler yields to persist progress without completing the step.
// Cursor is any JSON; AccumulatedResults may be JSON null.
type CheckpointYieldData struct {
	StepUUID           uuid.UUID       `json:"step_uuid"`
	Cursor             json.RawMessage `json:"cursor"`
	ItemsProcessed     uint64          `json:"items_processed"`
	AccumulatedResults json.RawMessage `json:"accumulated_results"`
}

// CheckpointRecord is the JSON stored in workflow_steps.checkpoint. History includes the current
// cursor once persisted (the SQL appends it).
type CheckpointRecord struct {
	Cursor             json.RawMessage          `json:"cursor"`
	ItemsProcessed     uint64                   `json:"items_processed"`
	Timestamp          time.Time                `json:"timestamp"`
	AccumulatedResults json.RawMessage          `json:"accumulated_results"`
	History            []CheckpointHistoryEntry `json:"history"`
}

// CheckpointHistoryEntry is one element of CheckpointRecord.history.
type CheckpointHistoryEntry struct {
	Cursor    json.RawMessage `json:"cursor"`
	Timestamp time.Time       `json:"timestamp"`
}

// ToRecord returns the record to persist for this yield at time at (UTC), with an empty history
// for the persistence SQL to fill.
func (d CheckpointYieldData) ToRecord(at time.Time) CheckpointRecord {
	return CheckpointRecord{
		Cursor:             d.Cursor,
		ItemsProcessed:     d.ItemsProcessed,
		Timestamp:          at.UTC(),
		AccumulatedResults: d.AccumulatedResults,
		History:            []CheckpointHistoryEntry{},
	}
}

// MarshalJSON writes null for nil raw values.
func (d CheckpointYieldData) MarshalJSON() ([]byte, error) {
	type plain CheckpointYieldData
	p := plain(d)
	p.Cursor = orNull(p.Cursor)
	p.AccumulatedResults = orNull(p.AccumulatedResults)
	return json.Marshal(p)
}

// MarshalJSON writes null for nil raw values and [] for a nil history.
func (r CheckpointRecord) MarshalJSON() ([]byte, error) {
	history := r.History
	if history == nil {
		history = []CheckpointHistoryEntry{}
	}
	return json.Marshal(struct {
		Cursor             json.RawMessage          `json:"cursor"`
		ItemsProcessed     uint64                   `json:"items_processed"`
		Timestamp          UTCTime                  `json:"timestamp"`
		AccumulatedResults json.RawMessage          `json:"accumulated_results"`
		History            []CheckpointHistoryEntry `json:"history"`
	}{orNull(r.Cursor), r.ItemsProcessed, UTCTime(r.Timestamp), orNull(r.AccumulatedResults), history})
}

// MarshalJSON writes null for a nil cursor.
func (e CheckpointHistoryEntry) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Cursor    json.RawMessage `json:"cursor"`
		Timestamp UTCTime         `json:"timestamp"`
	}{orNull(e.Cursor), UTCTime(e.Timestamp)})
}

func orNull(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage(`null`)
	}
	return v
}
