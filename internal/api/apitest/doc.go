// Package apitest holds the API's integration tests: the real server over a
// real SQLite store and queue, driven through httptest and the Go client.
// They live apart from package api so that the fuzz targets of package api
// build without the SQLite driver (whose instrumentation is slow).
package apitest
