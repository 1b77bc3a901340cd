package client

import (
	"context"
	"net/http"
	"testing"
)

func TestLocalClientDecodesAnswersAndErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dlq/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"AUTHENTICATION_FAILED","message":"Missing authentication credentials"}}`))
			return
		}
		_, _ = w.Write([]byte(`[{"dlq_reason":"StalenessTimeout","total_entries":2,"pending":1,"oldest_entry":null}]` + "\n"))
	})
	ctx := context.Background()
	stats, raw, err := NewLocal(mux, WithToken("tok")).DLQStats(ctx)
	if err != nil || len(stats) != 1 || stats[0].DLQReason != "StalenessTimeout" || stats[0].TotalEntries != 2 || len(raw) == 0 {
		t.Fatalf("stats %+v raw %s err %v", stats, raw, err)
	}
	_, _, err = NewLocal(mux).DLQStats(ctx)
	if !IsStatus(err, http.StatusUnauthorized) || err.Error() != "HTTP 401 AUTHENTICATION_FAILED: Missing authentication credentials" {
		t.Fatalf("unauthenticated: %v", err)
	}
	_, _, err = NewLocal(mux).DLQ(ctx, DLQQuery{})
	if !IsStatus(err, http.StatusNotFound) {
		t.Fatalf("unknown route: %v", err)
	}
	if _, err := New("localhost:8080"); err == nil {
		t.Error("New accepted a URL without scheme")
	}
}
