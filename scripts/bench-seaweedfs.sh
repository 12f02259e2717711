#!/usr/bin/env bash
# bench-seaweedfs.sh runs BenchmarkUpload's S3 cases against SeaweedFS on
# loopback: it starts `weed mini` (master, volume, filer and S3 gateway in
# one process, no authentication) with its data under a new temporary
# directory, waits until the S3 port answers, runs the benchmark with
# DROVER_BENCH_S3_ENDPOINT pointing at it, then stops weed and removes the
# directory.
#
#   WEED=/path/to/weed scripts/bench-seaweedfs.sh [go test flags...]
#
# Defaults: -bench 'BenchmarkUpload/s3' -benchtime 2x, and
# DROVER_BENCH_UPLOAD_MIB=1024 unless set. BENCH_BIN, when set, is a test
# binary of ./internal/outputsvc (go test -c) to run instead of go test
# (flags then take the -test. prefix, e.g. -test.bench). S3_PORT (8333)
# moves the S3 port; the other ports are weed's defaults, so they must be
# free.
set -euo pipefail

WEED=${WEED:-$(command -v weed || true)}
# The module's go.mod has replace directives, so `go install ...@version`
# refuses it; build it as the main module instead:
#   v=v0.0.0-20261109003541-7506e5f91cd6; go mod download github.com/seaweedfs/seaweedfs@$v
#   cp -r "$(go env GOMODCACHE)/github.com/seaweedfs/seaweedfs@$v" /tmp/sw && chmod -R u+w /tmp/sw
#   (cd /tmp/sw && go build -o /usr/local/bin/weed ./weed)
[ -x "$WEED" ] || { echo "bench-seaweedfs: set WEED to a SeaweedFS binary (built from the module's source; see the top of this script)" >&2; exit 2; }
port=${S3_PORT:-8333}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/drover-seaweedfs.XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		# weed's own CPU time (user + system), beside the benchmark's
		# cpu-ms/op, which counts the agent and the Drover server.
		awk -v hz="$(getconf CLK_TCK)" '{printf "weed: %.1f s CPU in all\n", ($14+$15)/hz}' "/proc/$pid/stat" >&2 || true
		kill "$pid"
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/data"
"$WEED" mini -dir="$tmp/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$port" \
	-admin.ui=false -webdav=false -master.telemetry=false >"$tmp/weed.log" 2>&1 &
pid=$!
for i in $(seq 1 300); do
	if curl -s -o /dev/null "http://127.0.0.1:$port/"; then break; fi
	if ! kill -0 "$pid" 2>/dev/null || [ "$i" = 300 ]; then
		echo "bench-seaweedfs: weed did not start; its log:" >&2
		cat "$tmp/weed.log" >&2
		exit 1
	fi
	sleep 0.2
done

export DROVER_BENCH_S3_ENDPOINT="http://127.0.0.1:$port" DROVER_BENCH_S3_PID=$pid
export DROVER_BENCH_UPLOAD_MIB=${DROVER_BENCH_UPLOAD_MIB:-1024}
export TMPDIR="$tmp"
if [ -n "${BENCH_BIN:-}" ]; then
	[ $# -gt 0 ] || set -- -test.bench 'BenchmarkUpload/s3' -test.benchtime 2x
	(cd "$root/internal/outputsvc" && "$BENCH_BIN" -test.run '^$' "$@")
else
	[ $# -gt 0 ] || set -- -bench 'BenchmarkUpload/s3' -benchtime 2x
	(cd "$root" && go test -run '^$' "$@" ./internal/outputsvc)
fi
