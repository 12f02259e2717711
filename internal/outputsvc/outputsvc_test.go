package outputsvc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/agent"
	"github.com/droverhq/drover/internal/api"
	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/blobstore"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/droverhq/drover/internal/outputsvc"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
	"github.com/droverhq/drover/internal/store/sqlite"
	"github.com/google/uuid"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

const (
	opToken    = "op-secret-token"
	ownerToken = "alice-secret-token"
	bobToken   = "bob-secret-token"
)

type env struct {
	st    store.Store
	q     *queue.Service
	svc   *outputsvc.Service
	blob  *blobstore.Store
	hs    *httptest.Server
	clock *core.FakeClock
	op    *client.Client
}

// backends are the output stores every case runs against: the embedded
// directory and a loopback S3 (gofakes3, in process).
func backends(testing.TB) map[string]func(t testing.TB) string {
	return map[string]func(t testing.TB) string{
		"file": func(t testing.TB) string { return filepath.Join(t.TempDir(), "outputs") },
		"s3": func(t testing.TB) string {
			be := s3mem.New()
			if err := be.CreateBucket("outputs"); err != nil {
				t.Fatalf("create bucket: %v", err)
			}
			fs := httptest.NewServer(gofakes3.New(be).Server())
			t.Cleanup(fs.Close)
			t.Setenv("AWS_ACCESS_KEY_ID", "test")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
			t.Setenv("AWS_REGION", "us-east-1")
			return "s3://outputs?region=us-east-1&use_path_style=true&endpoint=" + fs.URL
		},
	}
}

// databases are the stores the database-sensitive cases run on.
func databases() map[string]func(t testing.TB) store.Store {
	return map[string]func(t testing.TB) store.Store{
		"sqlite":   openSQLite,
		"postgres": func(t testing.TB) store.Store { return pgtest.Open(t, 8) },
	}
}

func openSQLite(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "o.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	if _, err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

func newEnv(t testing.TB, storeURL string, mod func(*outputsvc.Config)) *env {
	t.Helper()
	return newEnvDB(t, openSQLite(t), storeURL, mod)
}

func newEnvDB(t testing.TB, st store.Store, storeURL string, mod func(*outputsvc.Config)) *env {
	t.Helper()
	ctx := t.Context()
	clock := core.NewFakeClock(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	logger := slog.New(slog.DiscardHandler)
	q := queue.New(st, clock, queue.Config{MaxAttempts: 3}, logger)
	qctx, cancel := context.WithCancel(context.Background())
	q.Start(qctx)
	bs, err := blobstore.Open(ctx, storeURL)
	if err != nil {
		t.Fatalf("open blob store: %v", err)
	}
	signer, err := outputs.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := outputsvc.Config{
		Store: st, Blob: bs, Signer: signer, Clock: clock, Completer: q, Logger: logger,
		PartSize:  5 << 20,
		Required:  map[string][]string{"video": {"video.mp4"}},
		Retention: func(string) time.Duration { return time.Hour },
	}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := outputsvc.New(cfg)
	if err != nil {
		t.Fatalf("outputsvc.New: %v", err)
	}
	srv, err := api.New(api.Config{
		Store: st, Queue: q, Clock: clock, Logger: logger, OperatorToken: opToken,
		OwnerTokens: map[string]string{ownerToken: "alice", bobToken: "bob"},
		Outputs:     svc,
	})
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		q.Stop()
		cancel()
		_ = bs.Close()
		_ = st.Close()
	})
	return &env{st: st, q: q, svc: svc, blob: bs, hs: hs, clock: clock, op: mustClient(t, hs.URL, opToken)}
}

func mustClient(t testing.TB, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type worker struct {
	id  uuid.UUID
	tok string
	c   *client.Client
}

func (e *env) addWorker(t testing.TB) *worker {
	t.Helper()
	return e.addWorkerN(t, 1)
}

// addWorkerN registers a ready worker with n slots.
func (e *env) addWorkerN(t testing.TB, n int) *worker {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	tok := "worker-token-" + id.String()
	now := e.clock.Now()
	if err := e.st.WorkerInsert(t.Context(), &core.Worker{
		ID: id, Pool: "default", Provider: "sim", Placement: "default/gpu/r", State: core.WorkerReady,
		TokenHash: api.HashToken(tok), Concurrency: n, CreatedAt: now, StateChangedAt: now, ReadyAt: &now,
	}); err != nil {
		t.Fatal(err)
	}
	return &worker{id: id, tok: tok, c: mustClient(t, e.hs.URL, tok)}
}

func (e *env) submit(t testing.TB, c *client.Client, typ, params string, maxAttempts int) *core.Task {
	t.Helper()
	res, err := c.Submit(t.Context(), &wire.SubmitRequest{Type: typ, Params: json.RawMessage(params), MaxAttempts: &maxAttempts})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return res.Task
}

func (e *env) claim(t testing.TB, w *worker) wire.Lease {
	t.Helper()
	ts, err := w.c.Claim(t.Context(), w.id, 1, 0)
	if err != nil || len(ts) != 1 {
		t.Fatalf("claim: %v (%d tasks)", err, len(ts))
	}
	return wire.Lease{TaskID: ts[0].ID, Token: ts[0].LeaseToken}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// waitState polls the task until it reaches state (real agents run in
// goroutines; the deadline bounds the wait, nothing sleeps blindly).
func (e *env) waitState(t *testing.T, id uuid.UUID, states ...core.TaskState) *core.Task {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		task, err := e.op.Task(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if task.State == s {
				return task
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s (%s), want %v", id, task.State, task.Error, states)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startAgent runs a real agent with a shell handler against the server.
func (e *env) startAgent(t *testing.T, w *worker, handler string) {
	t.Helper()
	a := agent.New(w.c, agent.Options{
		WorkerID: w.id,
		Runner:   &agent.Runner{Command: handler, KillGrace: 2 * time.Second, TempDir: t.TempDir()},
		GPU:      agent.StaticGPUs{{Index: 0, Name: "Test GPU", MemoryMiB: 1024}},
		Logger:   slog.New(slog.DiscardHandler),
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// threeOutputs writes a text file, a PNG and a 6 MiB binary (multipart on
// S3 with 5 MiB parts).
const threeOutputs = `cat >/dev/null
printf 'hello outputs\n' > "$DROVER_OUTPUT_DIR/notes.txt"
printf '\211PNG\r\n\032\n0000IHDR' > "$DROVER_OUTPUT_DIR/tile.png"
head -c 6291456 /dev/urandom > "$DROVER_OUTPUT_DIR/big.bin"
echo '{"files":["notes.txt","tile.png","big.bin"]}'`

func TestAgentUploadsVerifiedOutputs(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mk(t), nil)
			w := e.addWorker(t)
			task := e.submit(t, e.op, "render", `{}`, 1)
			e.startAgent(t, w, threeOutputs)
			got := e.waitState(t, task.ID, core.TaskSucceeded, core.TaskFailed)
			if got.State != core.TaskSucceeded {
				t.Fatalf("task %s: %s", got.State, got.Error)
			}
			res, err := e.op.Outputs(t.Context(), task.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Outputs) != 3 {
				t.Fatalf("got %d outputs, want 3: %+v", len(res.Outputs), res.Outputs)
			}
			dir := t.TempDir()
			types := map[string]string{"notes.txt": "text/plain; charset=utf-8", "tile.png": "image/png", "big.bin": "application/octet-stream"}
			for _, o := range res.Outputs {
				p, err := e.op.DownloadOutput(t.Context(), task.ID, o.Name, dir)
				if err != nil {
					t.Fatalf("download %s: %v", o.Name, err)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if sum(b) != o.SHA256 || int64(len(b)) != o.Size {
					t.Errorf("%s: downloaded %d bytes sha %s; manifest %d bytes sha %s", o.Name, len(b), sum(b), o.Size, o.SHA256)
				}
				if o.ContentType != types[o.Name] {
					t.Errorf("%s: content type %q, want %q", o.Name, o.ContentType, types[o.Name])
				}
				if o.Attempt != 1 {
					t.Errorf("%s: attempt %d, want 1", o.Name, o.Attempt)
				}
			}
			// Another owner cannot read them; the owner can.
			alice := e.submit(t, mustClient(t, e.hs.URL, ownerToken), "render", `{}`, 1)
			if _, err := mustClient(t, e.hs.URL, bobToken).Outputs(t.Context(), alice.ID); client.StatusOf(err) != http.StatusForbidden {
				t.Fatalf("bob reads alice's outputs: %v, want 403", err)
			}
			if _, err := mustClient(t, e.hs.URL, ownerToken).Outputs(t.Context(), alice.ID); err != nil {
				t.Fatalf("alice reads her outputs: %v", err)
			}
		})
	}
}

func TestRequiredOutputMissingFailsAttempt(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "outputs"), nil)
	w := e.addWorker(t)
	byType := e.submit(t, e.op, "video", `{}`, 1)
	byParams := e.submit(t, e.op, "render", `{"drover_outputs":["frame.png"]}`, 1)
	e.startAgent(t, w, `cat >/dev/null; printf x > "$DROVER_OUTPUT_DIR/other.txt"; echo '{}'`)
	for id, want := range map[uuid.UUID]string{byType.ID: `required output "video.mp4"`, byParams.ID: `required output "frame.png"`} {
		got := e.waitState(t, id, core.TaskFailed, core.TaskSucceeded)
		if got.State != core.TaskFailed || !strings.Contains(got.Error, want) {
			t.Errorf("task %s: %s %q, want failed with %q", id, got.State, got.Error, want)
		}
		if res, err := e.op.Outputs(t.Context(), id); err != nil || len(res.Outputs) != 0 {
			t.Errorf("outputs recorded for a failed attempt: %v %+v", err, res)
		}
	}
}

// put uploads body to a granted target with the given content type.
func put(t *testing.T, w *worker, tg wire.UploadTarget, ct string, body []byte) error {
	t.Helper()
	h := map[string]string{}
	for k, v := range tg.Headers {
		h[k] = v
	}
	if ct != "" {
		h["Content-Type"] = ct
	}
	_, err := w.c.PutObject(t.Context(), tg.URL, h, bytes.NewReader(body), int64(len(body)))
	return err
}

func TestCorruptedUploadIsRejected(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mk(t), nil)
			w := e.addWorker(t)
			task := e.submit(t, e.op, "render", `{}`, 1)
			lease := e.claim(t, w)
			body := []byte("the real bytes")
			tgs, err := w.c.UploadURLs(t.Context(), w.id, lease, []wire.UploadFile{{Name: "a.txt", Size: int64(len(body)), ContentType: "text/plain"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := put(t, w, tgs[0], "", body); err != nil {
				t.Fatal(err)
			}
			cases := map[string]wire.OutputEntry{
				"SHA-256":          {Name: "a.txt", Size: int64(len(body)), SHA256: sum([]byte("other bytes!!!")), ContentType: "text/plain"},
				"has 14 bytes":     {Name: "a.txt", Size: 99, SHA256: sum(body), ContentType: "text/plain"},
				"was not uploaded": {Name: "b.txt", Size: 1, SHA256: sum([]byte("x")), ContentType: "text/plain"},
				"path separator":   {Name: "../x", Size: 1, SHA256: sum([]byte("x")), ContentType: "text/plain"},
				"NUL byte":         {Name: "a\x00b", Size: 1, SHA256: sum([]byte("x")), ContentType: "text/plain"},
				"stored as":        {Name: "a.txt", Size: int64(len(body)), SHA256: sum(body), ContentType: "image/png"},
				"64 hex digits":    {Name: "a.txt", Size: int64(len(body)), SHA256: "abc", ContentType: "text/plain"},
				"not type/subtype": {Name: "a.txt", Size: int64(len(body)), SHA256: sum(body), ContentType: "text"},
			}
			for want, entry := range cases {
				err := w.c.CompleteOutputs(t.Context(), w.id, lease, json.RawMessage(`{}`), []wire.OutputEntry{entry})
				if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), entry.Name[:1]) {
					t.Errorf("manifest %+v: %v, want 400 naming the file and %q", entry, err, want)
				}
			}
			got := e.waitState(t, task.ID, core.TaskRunning)
			if got.State != core.TaskRunning {
				t.Fatalf("task is %s after rejected completions", got.State)
			}
			if res, _ := e.op.Outputs(t.Context(), task.ID); len(res.Outputs) != 0 {
				t.Fatalf("outputs recorded: %+v", res.Outputs)
			}
			// The true manifest succeeds.
			if err := w.c.CompleteOutputs(t.Context(), w.id, lease, nil, []wire.OutputEntry{{Name: "a.txt", Size: int64(len(body)), SHA256: sum(body), ContentType: "text/plain"}}); err != nil {
				t.Fatalf("complete: %v", err)
			}
			e.waitState(t, task.ID, core.TaskSucceeded)
		})
	}
}

func TestSignedURLSecurity(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "outputs"), nil)
	w := e.addWorker(t)
	e.submit(t, e.op, "render", `{}`, 1)
	e.submit(t, e.op, "render", `{}`, 1)
	la := e.claim(t, w)
	lb := e.claim(t, w)
	body := []byte("0123456789")
	grant := func(l wire.Lease, name string) wire.UploadTarget {
		tgs, err := w.c.UploadURLs(t.Context(), w.id, l, []wire.UploadFile{{Name: name, Size: int64(len(body)), ContentType: "text/plain"}})
		if err != nil {
			t.Fatal(err)
		}
		return tgs[0]
	}
	ta := grant(la, "a.txt")
	// Forge the grant of task A to write task B's object: the signature
	// no longer matches.
	tok := strings.TrimPrefix(ta.URL, "/v1/blobs/")
	payload, sig, _ := strings.Cut(tok, ".")
	raw, _ := base64Decode(payload)
	raw = bytes.ReplaceAll(raw, []byte(la.TaskID.String()), []byte(lb.TaskID.String()))
	forged := base64Encode(raw)
	if err := put(t, w, wire.UploadTarget{URL: "/v1/blobs/" + forged + "." + sig, Headers: ta.Headers}, "", body); client.StatusOf(err) != http.StatusForbidden {
		t.Errorf("forged cross-task URL: %v, want 403", err)
	}
	// A lying Content-Type header is refused.
	if err := put(t, w, ta, "image/png", body); client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "Content-Type") {
		t.Errorf("lying content type: %v, want 400 naming Content-Type", err)
	}
	// More bytes than granted are refused.
	if _, err := w.c.PutObject(t.Context(), ta.URL, ta.Headers, bytes.NewReader(append(body, 'x')), int64(len(body))+1); client.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("oversize body: %v, want 400", err)
	}
	// An expired URL is refused.
	e.clock.Advance(outputsvc.DefaultURLExpiry + time.Second)
	if err := put(t, w, ta, "", body); client.StatusOf(err) != http.StatusForbidden || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired URL: %v, want 403 expired", err)
	}
	// A stale lease can neither upload nor complete.
	tb := grant(lb, "b.txt")
	if _, err := e.op.Cancel(t.Context(), lb.TaskID); err != nil {
		t.Fatal(err)
	}
	if err := put(t, w, tb, "", body); client.StatusOf(err) != http.StatusConflict {
		t.Errorf("upload under a stale lease: %v, want 409", err)
	}
	if _, err := w.c.UploadURLs(t.Context(), w.id, lb, []wire.UploadFile{{Name: "c", Size: 1, ContentType: "text/plain"}}); client.StatusOf(err) != http.StatusConflict {
		t.Errorf("grant under a stale lease: %v, want 409", err)
	}
}

// TestRerunRecordsOneSet: a worker that dies mid-upload leaves a partial
// set under its lease; the rerun's set is the one recorded, the stale
// lease cannot complete, and the dead attempt's objects are deleted.
func TestRerunRecordsOneSet(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mk(t), nil)
			w1, w2 := e.addWorker(t), e.addWorker(t)
			task := e.submit(t, e.op, "render", `{}`, 3)
			l1 := e.claim(t, w1)
			b1 := []byte("attempt one")
			tgs, err := w1.c.UploadURLs(t.Context(), w1.id, l1, []wire.UploadFile{{Name: "a.txt", Size: int64(len(b1)), ContentType: "text/plain"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := put(t, w1, tgs[0], "", b1); err != nil {
				t.Fatal(err)
			}
			// It was also halfway through a large file: on S3 one part of
			// a multipart upload is in the bucket.
			half, err := w1.c.UploadURLs(t.Context(), w1.id, l1, []wire.UploadFile{{Name: "big.bin", Size: 6 << 20, ContentType: "application/octet-stream"}})
			if err != nil {
				t.Fatal(err)
			}
			if name == "s3" {
				if len(half[0].PartURLs) != 2 {
					t.Fatalf("6 MiB in 5 MiB parts: %d part URLs", len(half[0].PartURLs))
				}
				part := bytes.Repeat([]byte("p"), 5<<20)
				if _, err := w1.c.PutObject(t.Context(), half[0].PartURLs[0], nil, bytes.NewReader(part), int64(len(part))); err != nil {
					t.Fatal(err)
				}
				if pending, err := e.blob.PendingUploads(t.Context(), "tasks/"+task.ID.String()+"/"); err != nil || len(pending) != 1 {
					t.Fatalf("pending uploads %v (%v), want the half-uploaded big.bin", pending, err)
				}
			}
			// Worker 1 is lost (SIGKILLed): its lease is requeued.
			if _, err := queue.RequeueLost(t.Context(), e.st, e.clock.Now(), []uuid.UUID{w1.id}, time.Time{}); err != nil {
				t.Fatal(err)
			}
			l2 := e.claim(t, w2)
			var manifest []wire.OutputEntry
			for _, n := range []string{"a.txt", "b.txt"} {
				b := []byte("attempt two " + n)
				tgs, err := w2.c.UploadURLs(t.Context(), w2.id, l2, []wire.UploadFile{{Name: n, Size: int64(len(b)), ContentType: "text/plain"}})
				if err != nil {
					t.Fatal(err)
				}
				if err := put(t, w2, tgs[0], "", b); err != nil {
					t.Fatal(err)
				}
				manifest = append(manifest, wire.OutputEntry{Name: n, Size: int64(len(b)), SHA256: sum(b), ContentType: "text/plain"})
			}
			old := []wire.OutputEntry{{Name: "a.txt", Size: int64(len(b1)), SHA256: sum(b1), ContentType: "text/plain"}}
			if err := w1.c.CompleteOutputs(t.Context(), w1.id, l1, nil, old); !client.IsLeaseLost(err) {
				t.Fatalf("stale lease completes: %v, want 409", err)
			}
			if err := w2.c.CompleteOutputs(t.Context(), w2.id, l2, nil, manifest); err != nil {
				t.Fatal(err)
			}
			if err := w2.c.CompleteOutputs(t.Context(), w2.id, l2, nil, manifest); !client.IsLeaseLost(err) {
				t.Fatalf("second completion: %v, want 409", err)
			}
			res, err := e.op.Outputs(t.Context(), task.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Outputs) != 2 || res.Outputs[0].Attempt != 2 || res.Outputs[0].SHA256 != manifest[0].SHA256 {
				t.Fatalf("recorded %+v, want attempt 2's two outputs", res.Outputs)
			}
			if _, err := e.blob.Stat(t.Context(), outputs.Key(task.ID.String(), l1.Token.String(), "a.txt")); err != blobstore.ErrNotFound {
				t.Fatalf("dead attempt's object: %v, want deleted", err)
			}
			if _, err := e.blob.Stat(t.Context(), outputs.Key(task.ID.String(), l1.Token.String(), "big.bin")); err != blobstore.ErrNotFound {
				t.Fatalf("dead attempt's half upload: %v, want never an object", err)
			}
			if pending, err := e.blob.PendingUploads(t.Context(), "tasks/"+task.ID.String()+"/"); err != nil || len(pending) != 0 {
				t.Fatalf("pending uploads after success: %v (%v), want the dead attempt's aborted", pending, err)
			}
			// Retention deletes objects and rows once expired.
			e.clock.Advance(2 * time.Hour)
			if n, err := e.svc.Sweep(t.Context()); err != nil || n != 2 {
				t.Fatalf("sweep: %d, %v; want 2", n, err)
			}
			if res, _ := e.op.Outputs(t.Context(), task.ID); len(res.Outputs) != 0 {
				t.Fatalf("outputs after retention: %+v", res.Outputs)
			}
			if _, err := e.blob.Stat(t.Context(), outputs.Key(task.ID.String(), l2.Token.String(), "a.txt")); err != blobstore.ErrNotFound {
				t.Fatalf("expired object: %v, want deleted", err)
			}
		})
	}
}

func base64Decode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
func base64Encode(b []byte) string          { return base64.RawURLEncoding.EncodeToString(b) }
