package queue

import (
	"fmt"
	"net/url"

	"github.com/droverhq/drover/internal/core"
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

// callbackURLs returns the completion webhook of each task: its own
// callback_url, else its owner's (Config.OwnerCallbacks); nil when no task
// has one. The store records them in the insert's transaction.
func (s *Service) callbackURLs(reqs []SubmitRequest, tasks []*core.Task) []string {
	var out []string
	for i, t := range tasks {
		u := ""
		if i < len(reqs) {
			u = reqs[i].CallbackURL
		}
		if u == "" {
			u = s.cfg.OwnerCallbacks[t.Owner]
		}
		if u == "" {
			continue
		}
		if out == nil {
			out = make([]string, len(tasks))
		}
		out[i] = u
	}
	return out
}
