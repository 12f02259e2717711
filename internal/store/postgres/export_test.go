package postgres

// SetLeaderLockRetryHook sets a function run before each immediate retry of
// the leader lock (nil removes it).
func SetLeaderLockRetryHook(fn func(try int)) { leaderLockRetryHook = fn }
