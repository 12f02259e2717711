package postgres

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// The COPY stream is the same whatever the size of the reads that take it,
// including rows larger than a chunk, and is framed as binary COPY wants:
// the signature, one 16-field tuple per row, the -1 trailer.
func TestTaskCopyReaderChunking(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := make([]*core.Task, 50)
	for i := range rows {
		rows[i] = &core.Task{ID: uuid.New(), Type: "t", Params: json.RawMessage(`{}`), Owner: "o", Pool: "p",
			CreatedAt: now, RunAfter: now, UpdatedAt: now, Timeout: time.Second}
	}
	rows[10].Params = json.RawMessage(`"` + strings.Repeat("y", 3*copyChunk) + `"`)
	rows[11].DependsOn = []uuid.UUID{uuid.New(), uuid.New()}
	rows[12].IdempotencyKey = "k"

	read := func(size int) []byte {
		var out []byte
		r := &taskCopyReader{rows: rows}
		p := make([]byte, size)
		for {
			n, err := r.Read(p)
			out = append(out, p[:n]...)
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
		}
	}
	want := read(1 << 20)
	for _, size := range []int{1, 7, 4096, 65531} {
		if got := read(size); !bytes.Equal(got, want) {
			t.Fatalf("reads of %d bytes: stream of %d bytes differs from reads of 1 MiB (%d bytes)", size, len(got), len(want))
		}
	}
	if !bytes.HasPrefix(want, []byte(copyHeader)) {
		t.Fatalf("stream starts %q, want the binary COPY header", want[:min(len(want), 19)])
	}
	if !bytes.HasSuffix(want, []byte{0xff, 0xff}) {
		t.Fatalf("stream ends %x, want the -1 trailer", want[len(want)-2:])
	}
	// Walk the tuples: each has copyFields fields whose lengths add up.
	b, tuples := want[len(copyHeader):len(want)-2], 0
	for len(b) > 0 {
		if n := binary.BigEndian.Uint16(b); n != copyFields {
			t.Fatalf("tuple %d has %d fields, want %d", tuples, n, copyFields)
		}
		b = b[2:]
		for range copyFields {
			n := int32(binary.BigEndian.Uint32(b))
			b = b[4:]
			if n > 0 {
				b = b[n:]
			}
		}
		tuples++
	}
	if tuples != len(rows) {
		t.Fatalf("%d tuples, want %d", tuples, len(rows))
	}
}
