package queue

import (
	"context"
	"fmt"
	"net/url"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// MaxCallbackURLLen bounds a task's callback_url.
const MaxCallbackURLLen = 2048

// CheckCallbackURL validates a completion webhook URL: an absolute http or
// https URL with a host, at most MaxCallbackURLLen characters. field names
// the offending field in the error.
func CheckCallbackURL(field, raw string) error {
	if len(raw) > MaxCallbackURLLen {
		return core.Invalid(field, "has %d characters; the limit is %d", len(raw), MaxCallbackURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return core.Invalid(field, "must be an absolute http:// or https:// URL")
	}
	if u.User != nil {
		return core.Invalid(field, "must not carry user:password; authenticate with the webhook signature")
	}
	return nil
}

// checkCallbacks validates the callback_url of each request.
func checkCallbacks(reqs []SubmitRequest) error {
	for i := range reqs {
		if reqs[i].CallbackURL == "" {
			continue
		}
		field := "callback_url"
		if len(reqs) > 1 {
			field = fmt.Sprintf("tasks[%d].callback_url", i)
		}
		if err := CheckCallbackURL(field, reqs[i].CallbackURL); err != nil {
			return err
		}
	}
	return nil
}

// putCallbacks records the completion webhook of each newly inserted task:
// its own callback_url, else its owner's (Config.OwnerCallbacks).
func (s *Service) putCallbacks(ctx context.Context, reqs []SubmitRequest, res []store.TaskInsertResult) error {
	var cbs []store.WebhookCallback
	for i, r := range res {
		if r.Existing || i >= len(reqs) {
			continue
		}
		u := reqs[i].CallbackURL
		if u == "" {
			u = s.cfg.OwnerCallbacks[r.Task.Owner]
		}
		if u != "" {
			cbs = append(cbs, store.WebhookCallback{TaskID: r.Task.ID, URL: u})
		}
	}
	if len(cbs) == 0 {
		return nil
	}
	if err := s.st.WebhookCallbackPut(ctx, cbs); err != nil {
		return fmt.Errorf("submit: record callbacks: %w", err)
	}
	return nil
}
