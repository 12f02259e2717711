package outputsvc_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// completeBatch posts a batched completion for w and returns the status
// and the decoded error or response.
func completeBatch(t *testing.T, e *env, w *worker, items []wire.CompleteItem) (int, wire.ErrorBody, wire.CompleteBatchResponse) {
	t.Helper()
	body, err := json.Marshal(wire.CompleteBatchRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.hs.URL+"/v1/workers/"+w.id.String()+"/complete", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+w.tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var eb wire.ErrorBody
	var ok wire.CompleteBatchResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &ok); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
	} else {
		_ = json.Unmarshal(raw, &eb)
	}
	return resp.StatusCode, eb, ok
}

// uploadOne grants and PUTs one text file for lease and returns its
// manifest entry.
func uploadOne(t *testing.T, w *worker, lease wire.Lease, name, content string) wire.OutputEntry {
	t.Helper()
	b := []byte(content)
	tgs, err := w.c.UploadURLs(t.Context(), w.id, lease, []wire.UploadFile{{Name: name, Size: int64(len(b)), ContentType: "text/plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := put(t, w, tgs[0], "", b); err != nil {
		t.Fatal(err)
	}
	return wire.OutputEntry{Name: name, Size: int64(len(b)), SHA256: sum(b), ContentType: "text/plain"}
}

// TestBatchCompleteCarriesManifests: POST /v1/workers/{id}/complete
// carries each task's manifest and verifies it like the single route; a
// bad manifest (or a missing required output) rejects the request,
// naming the item and the file, and records nothing.
func TestBatchCompleteCarriesManifests(t *testing.T) {
	for dbName, open := range databases() {
		t.Run(dbName, func(t *testing.T) {
			e := newEnvDB(t, open(t), filepath.Join(t.TempDir(), "outputs"), nil)
			w := e.addWorkerN(t, 4)
			for range 3 {
				e.submit(t, e.op, "render", `{}`, 1)
			}
			video := e.submit(t, e.op, "video", `{}`, 1) // requires video.mp4
			claimed, err := w.c.Claim(t.Context(), w.id, 4, 0)
			if err != nil || len(claimed) != 4 {
				t.Fatalf("claim: %v (%d tasks)", err, len(claimed))
			}
			var leases []wire.Lease
			var videoLease wire.Lease
			for _, c := range claimed {
				l := wire.Lease{TaskID: c.ID, Token: c.LeaseToken}
				if c.ID == video.ID {
					videoLease = l
					continue
				}
				leases = append(leases, l)
			}
			a := uploadOne(t, w, leases[0], "a.txt", "outputs of the first task")
			c := uploadOne(t, w, leases[2], "c.txt", "outputs of the third task")
			item := func(l wire.Lease, outs ...wire.OutputEntry) wire.CompleteItem {
				return wire.CompleteItem{TaskID: l.TaskID, LeaseToken: l.Token, Result: json.RawMessage(`{"ok":true}`), Outputs: outs}
			}
			badC := c
			badC.SHA256 = sum([]byte("not what was uploaded"))
			bigC := c
			bigC.Size = 1 << 40
			cases := []struct {
				items []wire.CompleteItem
				field string
				want  []string
			}{
				{[]wire.CompleteItem{item(leases[0], a), item(leases[1]), item(leases[2], badC)},
					"items[2].outputs", []string{`output "c.txt"`, "SHA-256", leases[2].TaskID.String()}},
				{[]wire.CompleteItem{item(leases[0], a), item(leases[2], bigC)},
					"items[1].outputs", []string{`output "c.txt"`, "limit"}},
				{[]wire.CompleteItem{item(leases[0], wire.OutputEntry{Name: "b.txt", Size: 1, SHA256: sum([]byte("x")), ContentType: "text/plain"})},
					"items[0].outputs", []string{`output "b.txt"`, "not uploaded"}},
				{[]wire.CompleteItem{item(leases[0], a), item(videoLease)},
					"items[1].outputs", []string{`required output "video.mp4"`}},
			}
			for i, tc := range cases {
				status, eb, _ := completeBatch(t, e, w, tc.items)
				msg := eb.Error.Message
				if status != http.StatusBadRequest || eb.Error.Field != tc.field {
					t.Errorf("case %d: %d %s %q, want 400 naming %s", i, status, eb.Error.Field, msg, tc.field)
				}
				for _, want := range tc.want {
					if !strings.Contains(msg, want) {
						t.Errorf("case %d: error %q does not say %q", i, msg, want)
					}
				}
			}
			// Nothing was recorded by the rejected requests.
			for _, l := range append(leases, videoLease) {
				tk, err := e.op.Task(t.Context(), l.TaskID)
				if err != nil {
					t.Fatal(err)
				}
				res, _ := e.op.Outputs(t.Context(), l.TaskID)
				if tk.State != core.TaskRunning || len(res.Outputs) != 0 {
					t.Fatalf("task %s is %s with %d outputs after rejected batches", l.TaskID, tk.State, len(res.Outputs))
				}
			}
			// A stale item is lost, the others complete with their outputs.
			stale := wire.CompleteItem{TaskID: videoLease.TaskID, LeaseToken: uuid.Must(uuid.NewV7()), Outputs: []wire.OutputEntry{a}}
			status, eb, resp := completeBatch(t, e, w, []wire.CompleteItem{item(leases[0], a), item(leases[1]), item(leases[2], c), stale})
			if status != http.StatusOK {
				t.Fatalf("good batch: %d %+v", status, eb)
			}
			if len(resp.Lost) != 1 || resp.Lost[0].TaskID != videoLease.TaskID {
				t.Fatalf("lost %+v, want only the stale item", resp.Lost)
			}
			want := map[uuid.UUID][]wire.OutputEntry{leases[0].TaskID: {a}, leases[1].TaskID: nil, leases[2].TaskID: {c}}
			for id, outs := range want {
				tk, err := e.op.Task(t.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				res, err := e.op.Outputs(t.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				if tk.State != core.TaskSucceeded || len(res.Outputs) != len(outs) {
					t.Fatalf("task %s: %s with %d outputs, want succeeded with %d", id, tk.State, len(res.Outputs), len(outs))
				}
				for i, o := range outs {
					got := res.Outputs[i]
					if got.Name != o.Name || got.SHA256 != o.SHA256 || got.Size != o.Size {
						t.Fatalf("task %s output %+v, want %+v", id, got, o)
					}
					b, _, err := e.blob.Open(t.Context(), "tasks/"+id.String()+"/"+leaseOf(leases, id).String()+"/"+o.Name)
					if err != nil {
						t.Fatal(err)
					}
					data, _ := io.ReadAll(b)
					b.Close()
					if sum(data) != o.SHA256 {
						t.Fatalf("stored bytes of %s do not match the manifest", o.Name)
					}
				}
			}
			if tk, _ := e.op.Task(t.Context(), videoLease.TaskID); tk.State != core.TaskRunning {
				t.Fatalf("stale item's task is %s, want still running", tk.State)
			}
		})
	}
}

func leaseOf(ls []wire.Lease, id uuid.UUID) uuid.UUID {
	for _, l := range ls {
		if l.TaskID == id {
			return l.Token
		}
	}
	return uuid.Nil
}
