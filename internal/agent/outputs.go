package agent

import (
	"context"
	"fmt"
	"io"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/google/uuid"
)

// OutputAPI is the part of the server API that uploads task outputs;
// *client.Client implements it. An API without it cannot upload: a
// handler that writes outputs then fails its attempt.
type OutputAPI interface {
	UploadURLs(ctx context.Context, workerID uuid.UUID, lease wire.Lease, files []wire.UploadFile) ([]wire.UploadTarget, error)
	CompleteMultipart(ctx context.Context, workerID uuid.UUID, lease wire.Lease, name, uploadID string, etags []string) error
	PutObject(ctx context.Context, url string, headers map[string]string, body io.Reader, size int64) (string, error)
	CompleteOutputs(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result []byte, manifest []wire.OutputEntry) error
}

// clientOutputs adapts *client.Client (whose result is json.RawMessage).
type clientOutputs struct{ *client.Client }

func (c clientOutputs) CompleteOutputs(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result []byte, manifest []wire.OutputEntry) error {
	return c.Client.CompleteOutputs(ctx, workerID, lease, result, manifest)
}

// NewClientOutputAPI returns the OutputAPI of a server client.
func NewClientOutputAPI(c *client.Client) OutputAPI { return clientOutputs{c} }

func (a *Agent) outputAPI() OutputAPI {
	api := a.api
	if w, ok := api.(watchedAPI); ok {
		api = w.API
	}
	switch x := api.(type) {
	case *client.Client:
		return clientOutputs{x}
	case OutputAPI:
		return x
	}
	return nil
}

// uploadOutputs uploads every file of dir for the held lease and returns
// the manifest; progress shows in the task's progress message.
func (a *Agent) uploadOutputs(ctx context.Context, t wire.ClaimedTask, rt *runningTask, dir string) ([]wire.OutputEntry, error) {
	u := &Uploader{
		API:      a.outputAPI(),
		WorkerID: a.opt.WorkerID,
		Log:      a.log,
		Wait:     func(ctx context.Context, try int) bool { return a.sleep(ctx, a.backoff(try)) },
		Progress: func(done, total int64) {
			msg := fmt.Sprintf("uploading outputs: %d of %d MiB", done>>20, total>>20)
			a.mu.Lock()
			tp := a.progress[t.ID]
			tp.TaskID, tp.LeaseToken, tp.Message = t.ID, rt.lease.Token, msg
			a.progress[t.ID] = tp
			a.mu.Unlock()
		},
	}
	return u.Upload(ctx, rt.lease, dir, outputs.ParamsRequired(t.Params))
}
