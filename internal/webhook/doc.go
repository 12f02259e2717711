// Package webhook delivers completion webhooks: when a task with a
// callback URL (its own callback_url, or its owner's from the config)
// reaches a final state, the server POSTs the task's final state, result or
// error and outputs manifest to that URL, signed with HMAC-SHA256.
//
// A delivery's life, kept in the store's outbox so that it survives
// restarts:
//
//	callback (task not final) --task final--> pending (attempts 0, due now)
//	pending --claimed by a sender--> pending (attempts+1, due at claim expiry)
//	  --2xx--> delivered
//	  --error, attempts left within the budget--> pending (due after backoff)
//	  --error, attempts or budget exhausted--> failed + event webhook.failed
//
// The claim is a compare-and-set on the attempt count, so two senders (two
// replicas) never send the same attempt; a sender that dies mid-attempt
// leaves the delivery due again when the claim expires. Delivery is at
// least once: a receiver dedupes by the delivery id "<task id>:<state>".
package webhook
