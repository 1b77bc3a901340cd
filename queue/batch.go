package queue

import "github.com/jackc/pgx/v5"

// QueueDelete queues on b the deletion of a message; deleted, when not nil, reports whether it
// was there.
func (c *Client) QueueDelete(b *pgx.Batch, queue string, msgID int64, deleted *bool) error {
	return queueMessageOp(b, "delete", func(s *queueStatements) string { return s.del }, queue, msgID, deleted)
}

// QueueArchive queues on b the move of a message to the archive; archived, when not nil,
// reports whether it was there.
func (c *Client) QueueArchive(b *pgx.Batch, queue string, msgID int64, archived *bool) error {
	return queueMessageOp(b, "archive", func(s *queueStatements) string { return s.archive }, queue, msgID, archived)
}

// QueueTake queues on b what SetVT does to a message known by id (hide it for vtSeconds), for a
// consumer that got the message in its notification; taken, when not nil, reports whether the
// message was still there.
func (c *Client) QueueTake(b *pgx.Batch, queue string, msgID int64, vtSeconds int, taken *bool) error {
	return c.QueueTakeIf(b, queue, msgID, vtSeconds, "", nil, taken, nil)
}

// QueueTakeIf is QueueTake gated on cond, a boolean SQL expression of its one parameter $3
// (condArg) evaluated when the statement runs, e.g. whether an earlier statement of the batch
// wrote a row: the message is left alone when cond is false. headers, when not nil, receives
// the message's headers.
func (c *Client) QueueTakeIf(b *pgx.Batch, queue string, msgID int64, vtSeconds int, cond string, condArg any, taken *bool, headers *[]byte) error {
	if err := ValidateName(queue); err != nil {
		return err
	}
	args := []any{msgID, vtSeconds}
	if cond != "" {
		args = append(args, condArg)
	}
	b.Queue(takeSQL(queue, cond), args...).Fn = func(br pgx.BatchResults) error {
		var (
			ok bool
			h  []byte
		)
		if err := br.QueryRow().Scan(&ok, &h); err != nil {
			return opErr("take", queue, err)
		}
		if taken != nil {
			*taken = ok
		}
		if headers != nil {
			*headers = h
		}
		return nil
	}
	return nil
}

// queueMessageOp queues the statement of queue that sql picks, one of msg_id returning whether
// the message was there.
func queueMessageOp(b *pgx.Batch, op string, sql func(*queueStatements) string, queue string, msgID int64, found *bool) error {
	if err := ValidateName(queue); err != nil {
		return err
	}
	b.Queue(sql(statementsFor(queue)), msgID).Fn = func(br pgx.BatchResults) error {
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
