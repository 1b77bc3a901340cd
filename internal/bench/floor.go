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
