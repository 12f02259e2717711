package config

// MaxQueuedPerOwner is the largest tasks.max_queued_per_owner accepted.
const MaxQueuedPerOwner = 100_000_000
