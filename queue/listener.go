package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/db"
)

// ListenerConfig configures Listen. Only URL and Channels are required.
type ListenerConfig struct {
	URL      string   // database URL; the connection gets db.RuntimeParams
	Channels []string // e.g. NotifyChannel("payments"); quoted for LISTEN
	Logger   *slog.Logger
	AppName  string // application_name of the connection (default db.DefaultSession's)

	Buffer      int           // capacity of Events (default 256)
	MinBackoff  time.Duration // first reconnect delay (default 100ms)
	MaxBackoff  time.Duration // reconnect delay cap (default 5s)
	HealthCheck time.Duration // idle time after which the connection is pinged (default 30s)
}

// Listener holds one dedicated connection that LISTENs on a fixed set of channels and delivers
// decoded notifications on Events. When the connection fails it reconnects with backoff,
// re-LISTENs and emits EventReconnected (notifications sent while it was down are lost, so
// consumers must poll). Events is closed once the listener has stopped.
type Listener struct {
	cfg    ListenerConfig
	log    *slog.Logger
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	pid    atomic.Uint32
}

// Listen connects, LISTENs on cfg.Channels and starts delivering events. The first connection
// must succeed; later failures are retried until ctx is cancelled or Close is called.
func Listen(ctx context.Context, cfg ListenerConfig) (*Listener, error) {
	if len(cfg.Channels) == 0 {
		return nil, errors.New("queue: listen: no channels")
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	if cfg.HealthCheck <= 0 {
		cfg.HealthCheck = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l := &Listener{
		cfg:    cfg,
		log:    log.With("component", "queue.listener"),
		events: make(chan Event, cfg.Buffer),
		done:   make(chan struct{}),
	}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	go l.run(runCtx, conn)
	return l, nil
}

// Events delivers notifications in arrival order. The listener blocks while it is full, so
// consumers must keep draining it.
func (l *Listener) Events() <-chan Event { return l.events }

// Done is closed when the listener has stopped.
func (l *Listener) Done() <-chan struct{} { return l.done }

// BackendPID is the server process id of the current connection, 0 while disconnected.
func (l *Listener) BackendPID() uint32 { return l.pid.Load() }

// Close stops the listener, closes its connection and waits until Events is closed.
func (l *Listener) Close() {
	l.once.Do(l.cancel)
	<-l.done
}

func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := db.ConnectOne(ctx, l.cfg.URL, db.WithAppName(l.cfg.AppName))
	if err != nil {
		return nil, fmt.Errorf("queue: listen: %w", err)
	}
	for _, ch := range l.cfg.Channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("queue: listen %q: %w", ch, err)
		}
	}
	l.pid.Store(conn.PgConn().PID())
	return conn, nil
}

func (l *Listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	defer close(l.events)
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
		l.pid.Store(0)
	}()
	for {
		if conn == nil {
			if conn = l.reconnect(ctx); conn == nil {
				return
			}
			if !l.emit(ctx, Event{Type: EventReconnected}) {
				return
			}
		}
		n, err := l.wait(ctx, conn)
		if n != nil {
			if !l.emit(ctx, l.decode(n)) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.log.Warn("listener connection lost; reconnecting", "pid", conn.PgConn().PID(), "err", err)
			closeConn(conn)
			conn = nil
			l.pid.Store(0)
		}
	}
}

// wait returns the next notification, or (nil, nil) after an idle period in which a ping showed
// the connection is still alive, or an error when the connection is unusable.
func (l *Listener) wait(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	wctx, cancel := context.WithTimeout(ctx, l.cfg.HealthCheck)
	n, err := conn.WaitForNotification(wctx)
	idle := err != nil && wctx.Err() != nil && ctx.Err() == nil
	cancel()
	if n != nil || err == nil || ctx.Err() != nil {
		return n, err
	}
	if !idle || conn.IsClosed() {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		return nil, fmt.Errorf("health check: %w", err)
	}
	return nil, nil
}

func (l *Listener) decode(n *pgconn.Notification) Event {
	ev, err := ParseEvent(n.Channel, n.Payload)
	if err != nil {
		l.log.Warn("unparsable notification", "channel", n.Channel, "err", err)
		return Event{Type: EventUnparsable, Channel: n.Channel, Namespace: namespaceOf(n.Channel, ""), Payload: n.Payload}
	}
	return ev
}

func (l *Listener) reconnect(ctx context.Context) *pgx.Conn {
	delay := l.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		// Up to 20% jitter so that many workers do not reconnect in lockstep.
		sleep := delay - time.Duration(rand.Int64N(int64(delay)/5+1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(sleep):
		}
		conn, err := l.connect(ctx)
		if err == nil {
			l.log.Info("listener reconnected", "attempt", attempt, "pid", conn.PgConn().PID())
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn("listener reconnect failed", "attempt", attempt, "err", err)
		delay = min(2*delay, l.cfg.MaxBackoff)
	}
}

func (l *Listener) emit(ctx context.Context, ev Event) bool {
	select {
	case l.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
