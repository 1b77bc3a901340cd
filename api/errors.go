package api

import (
	"encoding/json"
	"errors"
	"net/http"
)

// apiError is an error answered with tasker-core's error body:
// {"error": {"code": "NOT_FOUND", "message": "..."}}.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers e with tasker-core's error body.
func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, map[string]any{"error": map[string]string{"code": e.Code, "message": e.Message}})
}

// Errors of tasker-core's ApiError variants, with its codes and statuses.
func errBadRequest(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "BAD_REQUEST", Message: msg}
}

func errNotFound(msg string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "NOT_FOUND", Message: msg}
}

func errConflict(msg string) *apiError {
	return &apiError{Status: http.StatusConflict, Code: "CONFLICT", Message: msg}
}

// errInvalidUUID is ApiError::InvalidUuid, whose message is the offending value itself.
func errInvalidUUID(value string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "INVALID_UUID", Message: value}
}

// errDatabase is ApiError::DatabaseError("Database operation failed"): the cause is logged, not
// answered.
func errDatabase() *apiError {
	return &apiError{Status: http.StatusInternalServerError, Code: "DATABASE_ERROR", Message: "Database operation failed"}
}

// errResourceNotFound is tasker-core's answer to an unknown task or step.
var errResourceNotFound = errNotFound("Resource not found")

// fail answers err: an *apiError as it is, anything else as a database error after logging it.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae)
		return
	}
	a.log.ErrorContext(r.Context(), "api request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	writeError(w, errDatabase())
}
