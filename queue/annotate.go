package queue

import (
	"context"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// AnnotateTx merges headers into a queued message's headers column on tx (e.g. the reason a
// worker archives it, kept in the archive row). A missing message is not an error.
func (c *Client) AnnotateTx(ctx context.Context, tx DBTX, queue string, msgID int64, headers map[string]string) error {
	if err := ValidateName(queue); err != nil {
		return err
	}
	data, err := json.Marshal(headers)
	if err != nil {
		return err
	}
	table := pgx.Identifier{"pgmq", "q_" + strings.ToLower(queue)}.Sanitize()
	if _, err := c.on(tx).Exec(ctx, `UPDATE `+table+` SET headers = COALESCE(headers, '{}'::jsonb) || $2::jsonb WHERE msg_id = $1`, msgID, data); err != nil {
		return opErr("annotate", queue, err)
	}
	return nil
}

// Headers a consumer writes on a message it archives without acting on it, so the archive row
// explains itself.
const (
	// ArchiveReasonHeader holds the reason, a short snake_case word (malformed_message, ...).
	ArchiveReasonHeader = "x-tasker-archive-reason"
	// ArchiveDetailHeader holds the details of the reason (at most maxArchiveDetail characters).
	ArchiveDetailHeader = ArchiveReasonHeader + "-why"
	// ArchivedByHeader names who archived it (a worker id, processor uuid, consumer id).
	ArchivedByHeader = "x-tasker-archived-by"
)

const maxArchiveDetail = 1000

// ArchiveWithReasonTx records reason, detail, by and extra in the message's headers and archives
// it, on tx: both commit or neither. It reports whether the message was there to archive.
func (c *Client) ArchiveWithReasonTx(ctx context.Context, tx DBTX, queue string, msgID int64, reason, detail, by string, extra map[string]string) (bool, error) {
	headers := make(map[string]string, 3+len(extra))
	for k, v := range extra {
		headers[k] = v
	}
	headers[ArchiveReasonHeader] = reason
	headers[ArchiveDetailHeader] = truncateRunes(detail, maxArchiveDetail)
	headers[ArchivedByHeader] = by
	if err := c.AnnotateTx(ctx, tx, queue, msgID, headers); err != nil {
		return false, err
	}
	return c.ArchiveTx(ctx, tx, queue, msgID)
}

// truncateRunes cuts s to at most n runes, marking the cut with "…".
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
