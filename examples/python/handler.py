#!/usr/bin/env python3
"""An example Drover task handler.

The agent runs this once per task (pool `exec: python3 /app/handler.py`):
the task's params arrive as one JSON object on stdin, progress is reported
with `DROVER_PROGRESS <fraction> [message]` lines on stdout, and the result is
a JSON object written to $DROVER_RESULT_FILE (or printed as the last stdout
line). Exit 0 is success, 3 a final failure (bad params: never retried), any
other code a retryable failure.

Params: {"text": "...", "repeat": N (1..100, default 3), "fail": "final"|"retry"}
Result: {"text": "<text upper-cased, repeated>", "length": L, "attempt": A, "pod": "<RUNPOD_POD_ID>"}
"""

import json
import os
import signal
import sys

FINAL_FAILURE = 3


def progress(fraction, message=""):
    print(f"DROVER_PROGRESS {fraction:.2f} {message}".rstrip(), flush=True)


def main():
    # SIGTERM means cancel or timeout: stop quickly (nothing to save here).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        params = json.loads(sys.stdin.readline() or "{}")
    except json.JSONDecodeError as e:
        print(f"params are not JSON: {e}", file=sys.stderr)
        return FINAL_FAILURE
    if not isinstance(params, dict):
        print("params must be a JSON object", file=sys.stderr)
        return FINAL_FAILURE
    text = params.get("text")
    repeat = params.get("repeat", 3)
    if not isinstance(text, str) or not text:
        print('params.text: a non-empty string is required', file=sys.stderr)
        return FINAL_FAILURE
    if not isinstance(repeat, int) or not 1 <= repeat <= 100:
        print(f"params.repeat: must be an integer from 1 to 100 (got {repeat!r})", file=sys.stderr)
        return FINAL_FAILURE
    attempt = int(os.environ.get("DROVER_ATTEMPT", "1"))
    if params.get("fail") == "final":
        print("asked to fail for good", file=sys.stderr)
        return FINAL_FAILURE
    if params.get("fail") == "retry" and attempt == 1:
        print("asked to fail once; the server retries", file=sys.stderr)
        return 1

    parts = []
    for i in range(repeat):
        parts.append(text.upper())
        progress((i + 1) / repeat, f"step {i + 1}/{repeat}")
    out = " ".join(parts)
    result = {"text": out, "length": len(out), "attempt": attempt, "pod": os.environ.get("RUNPOD_POD_ID", "")}
    path = os.environ.get("DROVER_RESULT_FILE")
    if path:
        with open(path, "w") as f:
            json.dump(result, f)
    else:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
