package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
)

// floorQueue is the queue the PGMQ floor measurement uses.
const floorQueue = "bench_floor"

// floorResult is the raw PGMQ round trip rate: each cycle is pgmq.send, pgmq.read (qty 1) and
// pgmq.delete, three autocommit statements.
type floorResult struct {
	Conns        int
	Goroutines   int
	Cycles       int64
	Elapsed      time.Duration
	CyclesPerSec float64
	EmptyReads   int64
}

// runFloor runs goroutines concurrent send→read→delete loops on one queue through queue.Client,
// on a pool of conns connections, for warmup+dur, counting the cycles finished during dur.
func runFloor(ctx context.Context, d *database, conns, goroutines int, warmup, dur time.Duration) (floorResult, error) {
	pool, err := d.pool(ctx, conns, nil)
	if err != nil {
		return floorResult{}, err
	}
	defer pool.Close()
	qc := queue.NewClient(pool)
	if err := qc.EnsureQueue(ctx, floorQueue); err != nil {
		return floorResult{}, err
	}
	body, err := json.Marshal(protocol.StepMessage{TaskUUID: uuid.New(), StepUUID: uuid.New(), CorrelationID: uuid.New()})
	if err != nil {
		return floorResult{}, err
	}
	var cycles, empty atomic.Int64
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				if _, err := qc.Send(runCtx, nil, floorQueue, json.RawMessage(body), 0); err != nil {
					errs <- err
					return
				}
				var msg queue.Message
				for {
					msgs, err := qc.Read(runCtx, floorQueue, 30, 1)
					if err != nil {
						errs <- err
						return
					}
					if len(msgs) == 1 {
						msg = msgs[0]
						break
					}
					empty.Add(1) // another goroutine took the message this one sent; take the next
				}
				if _, err := qc.Delete(runCtx, floorQueue, msg.ID); err != nil {
					errs <- err
					return
				}
				cycles.Add(1)
			}
		}()
	}
	var res floorResult
	select {
	case <-time.After(warmup):
	case err := <-errs:
		stop()
		wg.Wait()
		return res, fmt.Errorf("bench: floor: %w", err)
	}
	c0, t0 := cycles.Load(), time.Now()
	select {
	case <-time.After(dur):
	case err := <-errs:
		stop()
		wg.Wait()
		return res, fmt.Errorf("bench: floor: %w", err)
	}
	c1, t1 := cycles.Load(), time.Now()
	stop()
	wg.Wait()
	res = floorResult{Conns: conns, Goroutines: goroutines, Cycles: c1 - c0, Elapsed: t1.Sub(t0), EmptyReads: empty.Load()}
	res.CyclesPerSec = float64(res.Cycles) / res.Elapsed.Seconds()
	return res, nil
}

// floorBatchQueue is the queue the batched PGMQ floor uses.
const floorBatchQueue = "bench_floor_batched"

// batchedFloorResult is the batched PGMQ rate: each cycle is one pgmq.send_batch of Batch
// messages, pgmq.read of up to Batch messages and one pgmq.delete of the ids read, three
// autocommit statements.
type batchedFloorResult struct {
	Goroutines int
	Batch      int
	Messages   int64 // deleted during the measured window
	Statements int64
	Elapsed    time.Duration
	MsgsPerSec float64
}

// runBatchedFloor runs goroutines concurrent send_batch→read(n)→delete(array) loops on one queue
// through queue.Client (one connection per goroutine) for warmup+dur, counting the messages
// deleted during dur.
func runBatchedFloor(ctx context.Context, d *database, goroutines, batch int, warmup, dur time.Duration) (batchedFloorResult, error) {
	res := batchedFloorResult{Goroutines: goroutines, Batch: batch}
	pool, err := d.pool(ctx, goroutines, nil)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	qc := queue.NewClient(pool)
	if err := qc.EnsureQueue(ctx, floorBatchQueue); err != nil {
		return res, err
	}
	body, err := json.Marshal(protocol.StepMessage{TaskUUID: uuid.New(), StepUUID: uuid.New(), CorrelationID: uuid.New()})
	if err != nil {
		return res, err
	}
	bodies := make([]any, batch)
	for i := range bodies {
		bodies[i] = json.RawMessage(body)
	}
	var msgs, stmts atomic.Int64
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]int64, 0, batch)
			for runCtx.Err() == nil {
				if _, err := qc.SendBatch(runCtx, nil, floorBatchQueue, bodies, 0); err != nil {
					errs <- err
					return
				}
				read, err := qc.Read(runCtx, floorBatchQueue, 30, batch)
				if err != nil {
					errs <- err
					return
				}
				stmts.Add(2)
				if len(read) == 0 {
					continue
				}
				ids = ids[:0]
				for _, m := range read {
					ids = append(ids, m.ID)
				}
				deleted, err := qc.DeleteBatch(runCtx, floorBatchQueue, ids)
				if err != nil {
					errs <- err
					return
				}
				stmts.Add(1)
				msgs.Add(int64(len(deleted)))
			}
		}()
	}
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case err := <-errs:
			stop()
			wg.Wait()
			return fmt.Errorf("bench: batched floor: %w", err)
		}
	}
	if err := wait(warmup); err != nil {
		return res, err
	}
	m0, s0, t0 := msgs.Load(), stmts.Load(), time.Now()
	if err := wait(dur); err != nil {
		return res, err
	}
	m1, s1, t1 := msgs.Load(), stmts.Load(), time.Now()
	stop()
	wg.Wait()
	res.Messages, res.Statements, res.Elapsed = m1-m0, s1-s0, t1.Sub(t0)
	res.MsgsPerSec = float64(res.Messages) / res.Elapsed.Seconds()
	return res, nil
}
