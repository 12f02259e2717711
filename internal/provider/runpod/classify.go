package runpod

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/provider"
)

// capacityPhrases are the details of a 400 that mean "this GPU type in
// this data center cannot be placed now" (RunPod gives no machine-readable
// code for it).
var capacityPhrases = []string{
	"no longer any instances available",
	"no instances available",
	"not enough free gpus",
	"could not find any pods with required specifications",
	"insufficient capacity",
}

// Hints appended to quota errors, so that the event says what to do.
const (
	HintBalance    = "add funds to the RunPod account (Billing), then the breakers close after their cooldown"
	HintAuth       = "the RunPod API key was refused: set a valid key in DROVER_RUNPOD_API_KEY or providers.runpod.api_key_file and restart"
	HintPermission = "the API key lacks permission for this request: give it read/write access to pods in the RunPod console, or remove this candidate"
)

// AccountWide reports whether err is a quota error that no candidate of
// the account can escape (402 balance, 401 bad key): the provider-level
// marker provider.Error.AccountWide, which the orchestrator reads.
func AccountWide(err error) bool {
	return provider.IsAccountWide(err)
}

// APIError is the typed error of a RunPod answer with its HTTP status.
type APIError struct {
	Status int
	Err    *provider.Error
}

// Unwrap returns the provider error, so provider.KindOf sees its kind.
func (e *APIError) Unwrap() error { return e.Err }

// Error implements error.
func (e *APIError) Error() string { return e.Err.Error() }

// classify turns a non-2xx answer into a typed error. The message quotes
// RunPod's detail and errors[]; it never holds the request's headers.
func classify(op string, status int, body []byte, retryAfter time.Duration) error {
	var p Problem
	detail := ""
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		detail = p.Detail
		if detail == "" {
			detail = p.Title
		}
	} else {
		// v1-era shapes: {"message": …} or {"error": …}; else the text.
		var v1 struct{ Message, Error string }
		if json.Unmarshal(body, &v1) == nil && (v1.Message != "" || v1.Error != "") {
			detail = v1.Message + v1.Error
		} else {
			detail = strings.TrimSpace(string(body))
			if len(detail) > 200 {
				detail = detail[:200] + "…"
			}
		}
	}
	msg := fmt.Sprintf("RunPod answered %d", status)
	if detail != "" {
		msg += ": " + detail
	}
	if len(p.Errors) > 0 {
		msg += " [" + strings.Join(p.Errors, "; ") + "]"
	}
	kind := provider.KindTransient
	switch {
	case status == http.StatusBadRequest:
		kind = provider.KindInvalid
		low := strings.ToLower(detail)
		for _, ph := range capacityPhrases {
			if strings.Contains(low, ph) {
				kind = provider.KindCapacity
				break
			}
		}
	case status == http.StatusUnauthorized:
		kind, msg = provider.KindQuota, msg+"; "+HintAuth
	case status == http.StatusPaymentRequired:
		kind, msg = provider.KindQuota, msg+"; "+HintBalance
	case status == http.StatusForbidden:
		kind, msg = provider.KindQuota, msg+"; "+HintPermission
	case status == http.StatusNotFound:
		kind = provider.KindNotFound
		if op == "create" {
			// An unknown templateId: the request is wrong, not a gone pod.
			kind = provider.KindInvalid
		}
	case status == http.StatusConflict:
		kind = provider.KindTransient // re-read the pod; the next tick does
	case status == http.StatusUnprocessableEntity:
		kind = provider.KindInvalid
	case status == http.StatusTooManyRequests:
		kind = provider.KindRateLimited
	case status >= 500:
		kind = provider.KindTransient
	case status >= 400:
		kind = provider.KindInvalid
	}
	accountWide := status == http.StatusPaymentRequired || status == http.StatusUnauthorized
	return &APIError{Err: &provider.Error{Op: op, Kind: kind, Message: msg, RetryAfter: retryAfter, AccountWide: accountWide}, Status: status}
}
