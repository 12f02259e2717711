package webhook

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// EventFailed is the event left by a delivery that exhausted its budget.
const EventFailed core.EventKind = "webhook.failed"

// Defaults of Config.
const (
	DefaultMaxAttempts    = 8
	DefaultBudget         = time.Hour
	DefaultBackoffBase    = 10 * time.Second
	DefaultBackoffMax     = 15 * time.Minute
	DefaultAttemptTimeout = 10 * time.Second
	// batch is how many due deliveries one Step takes, and parallel how
	// many it sends at once.
	batch    = 100
	parallel = 8
)

// Config configures a Dispatcher. Zero fields take the defaults above.
type Config struct {
	Store store.Store
	Clock core.Clock
	// Secret is the HMAC key (required). It is never logged.
	Secret []byte
	// Client sends the POSTs (default: a client without redirects).
	Client *http.Client
	// MaxAttempts bounds the attempts of one delivery (8).
	MaxAttempts int
	// Budget bounds the time from the task's final state to the last
	// attempt (1h).
	Budget time.Duration
	// BackoffBase and BackoffMax shape the delay after failed attempt n:
	// base·2^(n-1), capped at max (10s, 15m).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// AttemptTimeout bounds one POST (10s).
	AttemptTimeout time.Duration
	Logger         *slog.Logger
}

// Dispatcher moves final tasks' callbacks into the outbox and sends due
// deliveries. Safe to run on several replicas (see the package doc).
type Dispatcher struct {
	cfg Config
	log *slog.Logger
}

// New returns a Dispatcher, or an error when the secret is missing.
func New(cfg Config) (*Dispatcher, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook dispatcher: no signing secret (webhooks.secret_file or DROVER_WEBHOOK_SECRET)")
	}
	if cfg.Store == nil {
		return nil, errors.New("webhook dispatcher: no store")
	}
	cfg.Clock = cmp.Or[core.Clock](cfg.Clock, core.SystemClock{})
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.Budget = cmp.Or(cfg.Budget, DefaultBudget)
	cfg.BackoffBase = cmp.Or(cfg.BackoffBase, DefaultBackoffBase)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, DefaultBackoffMax)
	cfg.AttemptTimeout = cmp.Or(cfg.AttemptTimeout, DefaultAttemptTimeout)
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{cfg: cfg, log: log}, nil
}

// Payload is the JSON body of a delivery. It is the same for every attempt
// of one delivery.
type Payload struct {
	// ID is the idempotency id, "<task id>:<state>".
	ID         string          `json:"id"`
	TaskID     string          `json:"task_id"`
	Type       string          `json:"type,omitempty"`
	Owner      string          `json:"owner,omitempty"`
	State      string          `json:"state"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      string          `json:"error,omitempty"`
	Outputs    []*core.Output  `json:"outputs"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
}

// Backoff returns the delay after failed attempt n (n ≥ 1).
func (d *Dispatcher) Backoff(n int) time.Duration {
	b := d.cfg.BackoffBase
	for i := 1; i < n && b < d.cfg.BackoffMax; i++ {
		b *= 2
	}
	return min(b, d.cfg.BackoffMax)
}

// Step enqueues the deliveries of newly final tasks and makes one attempt
// at every due delivery. It returns how many attempts it made.
func (d *Dispatcher) Step(ctx context.Context) (int, error) {
	now := d.cfg.Clock.Now()
	if _, err := d.cfg.Store.WebhookEnqueue(ctx, now); err != nil {
		return 0, err
	}
	due, err := d.cfg.Store.WebhookDue(ctx, now, batch)
	if err != nil {
		return 0, err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		n    int
		errs []error
		sem  = make(chan struct{}, parallel)
	)
	for _, dl := range due {
		ok, err := d.cfg.Store.WebhookClaim(ctx, dl, now.Add(2*d.cfg.AttemptTimeout))
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			continue
		}
		if !ok {
			continue
		}
		dl.Attempts++
		n++
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := d.attempt(ctx, dl); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n, errors.Join(errs...)
}

// attempt sends one claimed delivery and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, dl *store.WebhookDelivery) error {
	body, err := d.payload(ctx, dl)
	if err != nil {
		return err
	}
	sendErr := d.send(ctx, dl, body)
	now := d.cfg.Clock.Now()
	if sendErr == nil {
		dl.Status, dl.LastError, dl.NextAt = store.WebhookDelivered, "", now
		d.log.Info("webhook delivered", "id", dl.ID, "attempt", dl.Attempts, "host", host(dl.URL))
		return d.cfg.Store.WebhookUpdate(ctx, dl)
	}
	dl.LastError = sendErr.Error()
	next := now.Add(d.Backoff(dl.Attempts))
	if dl.Attempts < d.cfg.MaxAttempts && !next.After(dl.CreatedAt.Add(d.cfg.Budget)) {
		dl.NextAt = next
		d.log.Warn("webhook attempt failed; will retry", "id", dl.ID, "attempt", dl.Attempts, "host", host(dl.URL), "next_at", next, "err", sendErr)
		return d.cfg.Store.WebhookUpdate(ctx, dl)
	}
	dl.Status, dl.NextAt = store.WebhookFailed, now
	if err := d.cfg.Store.WebhookUpdate(ctx, dl); err != nil {
		return err
	}
	msg := fmt.Sprintf("webhook %s to %s failed after %d attempts: %s", dl.ID, host(dl.URL), dl.Attempts, dl.LastError)
	d.log.Warn("webhook delivery failed; giving up", "id", dl.ID, "attempts", dl.Attempts, "host", host(dl.URL), "err", sendErr)
	data, _ := json.Marshal(map[string]any{"id": dl.ID, "attempts": dl.Attempts, "state": dl.State})
	if err := d.cfg.Store.EventInsertMany(ctx, []*core.Event{{
		Time: now, Kind: EventFailed, TaskID: dl.TaskID.String(), Message: msg, Data: data,
	}}); err != nil {
		return fmt.Errorf("record webhook failure %s: %w", dl.ID, err)
	}
	return nil
}

// payload builds the body of a delivery from the task and its outputs.
func (d *Dispatcher) payload(ctx context.Context, dl *store.WebhookDelivery) ([]byte, error) {
	p := Payload{ID: dl.ID, TaskID: dl.TaskID.String(), State: dl.State, Outputs: []*core.Output{}}
	t, err := d.cfg.Store.TaskGet(ctx, dl.TaskID)
	switch {
	case errors.Is(err, core.ErrNotFound):
		// Deleted by retention before delivery: send what the outbox knows.
	case err != nil:
		return nil, fmt.Errorf("webhook %s: read task: %w", dl.ID, err)
	case string(t.State) != dl.State:
		// Retried since (a delivery of an earlier final state): the row
		// now describes another run, so only what does not change is sent.
		p.Type, p.Owner = t.Type, t.Owner
	default:
		p.Type, p.Owner, p.Result, p.Error, p.FinishedAt = t.Type, t.Owner, t.Result, t.Error, t.FinishedAt
		outs, err := d.cfg.Store.OutputList(ctx, dl.TaskID)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: list outputs: %w", dl.ID, err)
		}
		p.Outputs = outs
	}
	body, err := json.Marshal(&p)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: encode: %w", dl.ID, err)
	}
	return body, nil
}

// send POSTs body once; nil means the receiver answered 2xx.
func (d *Dispatcher) send(ctx context.Context, dl *store.WebhookDelivery, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid callback URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "drover-webhook/1")
	req.Header.Set("Drover-Delivery-Id", dl.ID)
	req.Header.Set("Drover-Delivery-Attempt", strconv.Itoa(dl.Attempts))
	req.Header.Set(SignatureHeader, Sign(d.cfg.Secret, d.cfg.Clock.Now(), body))
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		// The URL may carry a token in its query: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// host returns the host of a callback URL, for logs (never the path or
// query, which may carry a token).
func host(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}

// Run calls Step every interval until ctx ends, while active() is true
// (nil = always; the server passes its leadership).
func (d *Dispatcher) Run(ctx context.Context, interval time.Duration, active func() bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if active != nil && !active() {
			continue
		}
		if _, err := d.Step(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("webhook step", "err", err)
		}
	}
}
