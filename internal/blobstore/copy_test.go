package blobstore

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestCopySummed: both copies (on one goroutine below pipelineMin, with
// the checksums on a second one above it) write exactly the bytes read
// and sum those bytes, whatever the sizes of the reads; more bytes than
// the limit, a failed read and a failed write are errors.
func TestCopySummed(t *testing.T) {
	for _, size := range []int{0, 1, 100 << 10, pipelineMin - 1, pipelineMin, pipelineMin + 12345, 3*pipelineMin + 7} {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		sum := sha256.Sum256(data)
		for name, r := range map[string]io.Reader{
			"whole":      bytes.NewReader(data),
			"one byte":   iotest.OneByteReader(bytes.NewReader(data[:min(size, 1<<16)])),
			"half reads": iotest.HalfReader(bytes.NewReader(data)),
		} {
			want := data
			wantSum := hex.EncodeToString(sum[:])
			if name == "one byte" {
				want = data[:min(size, 1<<16)]
				s := sha256.Sum256(want)
				wantSum = hex.EncodeToString(s[:])
			}
			var out bytes.Buffer
			wr, err := copySummed(&out, r, int64(len(want)))
			if err != nil {
				t.Fatalf("%d bytes, %s: %v", size, name, err)
			}
			if wr.N != int64(len(want)) || !bytes.Equal(out.Bytes(), want) || wr.SHA256 != wantSum || wr.CRC32C != CRC32C(want) {
				t.Fatalf("%d bytes, %s: wrote %d (%d), SHA-256 %s, CRC32C %08x; want %d, %s, %08x",
					size, name, wr.N, out.Len(), wr.SHA256, wr.CRC32C, len(want), wantSum, CRC32C(want))
			}
		}
		if size == 0 {
			continue
		}
		if _, err := copySummed(io.Discard, bytes.NewReader(data), int64(size-1)); err == nil || !strings.Contains(err.Error(), "more than") {
			t.Errorf("%d bytes over a limit of %d: %v, want more than the limit", size, size-1, err)
		}
		broken := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errors.New("connection reset")))
		if _, err := copySummed(io.Discard, broken, int64(size+10)); err == nil || !strings.Contains(err.Error(), "connection reset") {
			t.Errorf("%d bytes, then a failed read: %v", size, err)
		}
		if _, err := copySummed(failingWriter{}, bytes.NewReader(data), int64(size)); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%d bytes to a failing writer: %v", size, err)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
