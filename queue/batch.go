package queue

import "github.com/jackc/pgx/v5"

// QueueSendWithNotify queues on b what SendWithNotify does, so the send travels in one round trip
// with the statements around it (and commits with them). id, when not nil, receives the new
// message's id as b's results are read.
func (c *Client) QueueSendWithNotify(b *pgx.Batch, queue string, body any, delaySeconds int, id *int64) error {
	raw, err := prepareSend(queue, body, delaySeconds)
	if err != nil {
		return err
	}
	b.Queue("SELECT tasker.pgmq_send_with_notify($1::text, $2::jsonb, $3::integer)", queue, raw, delaySeconds).Fn =
		func(br pgx.BatchResults) error {
			var got int64
			if err := br.QueryRow().Scan(&got); err != nil {
				return opErr("send with notify", queue, err)
			}
			if id != nil {
				*id = got
			}
			return nil
		}
	return nil
}

// QueueDelete queues on b the deletion of a message; deleted, when not nil, reports whether it
// was there.
func (c *Client) QueueDelete(b *pgx.Batch, queue string, msgID int64, deleted *bool) error {
	return queueMessageOp(b, "delete", "SELECT pgmq.delete($1::text, $2::bigint)", queue, msgID, deleted)
}

// QueueArchive queues on b the move of a message to the archive; archived, when not nil,
// reports whether it was there.
func (c *Client) QueueArchive(b *pgx.Batch, queue string, msgID int64, archived *bool) error {
	return queueMessageOp(b, "archive", "SELECT pgmq.archive($1::text, $2::bigint)", queue, msgID, archived)
}

// queueMessageOp queues sql, a PGMQ function of (queue, msg_id) returning whether the message
// was there.
func queueMessageOp(b *pgx.Batch, op, sql, queue string, msgID int64, found *bool) error {
	if err := ValidateName(queue); err != nil {
		return err
	}
	b.Queue(sql, queue, msgID).Fn = func(br pgx.BatchResults) error {
		var ok bool
		if err := br.QueryRow().Scan(&ok); err != nil {
			return opErr(op, queue, err)
		}
		if found != nil {
			*found = ok
		}
		return nil
	}
	return nil
}
