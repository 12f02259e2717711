package api

import "time"

// FollowSettle is how old a row must be before a follow read (events or
// logs with follow=true) returns it. Ids come from a sequence: on
// PostgreSQL a row with a smaller id can commit after one with a larger id.
// A follower resumes after the last id it saw, so the answer stops before
// the first row younger than FollowSettle; a row whose transaction commits
// within that time is never skipped.
const FollowSettle = 2 * time.Second

// settled returns the prefix of rows (in id order) older than FollowSettle
// at now.
func settled[T any](rows []T, now time.Time, at func(T) time.Time) []T {
	for i, r := range rows {
		if at(r).After(now.Add(-FollowSettle)) {
			return rows[:i]
		}
	}
	return rows
}
