// Package outputs holds the rules of task outputs shared by the server and
// the agent: which names are valid, the limits, the manifest an agent sends
// with its completion, and the HMAC signatures of upload and download URLs
// served by Drover itself (the embedded default store).
//
// Life of an output (see docs/outputs.md):
//
//	handler writes $DROVER_OUTPUT_DIR/NAME (a fresh directory per attempt)
//	  → agent hashes it and asks the server for an upload URL (bound to task,
//	    lease, name, size and content type; short expiry)
//	  → agent PUTs the bytes to that URL (the server or S3/GCS/Azure directly)
//	  → agent completes the task with the manifest (name, size, SHA-256, type)
//	  → server checks every object's size and SHA-256 in the store and the
//	    task's required outputs, then records the outputs and marks the task
//	    succeeded in one transaction; any mismatch rejects the completion
//	    (nothing is recorded) and the agent fails the attempt (retryable).
//
// It imports neither the store nor any storage library: the agent uses it
// and must hold no storage credentials.
package outputs
