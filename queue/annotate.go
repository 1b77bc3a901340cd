package queue

import (
	"context"
	"encoding/json"
	"strings"

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
