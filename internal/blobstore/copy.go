package blobstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"
)

// Put's copy: the bytes of an upload are written to the object and
// checksummed (SHA-256 and CRC32C) as they arrive, never read back. A
// large upload is checksummed on a second goroutine while the first one
// receives and writes: one stream's SHA-256 and its writes to the page
// cache each take about as long as the other, so on one goroutine they
// bound an upload to about half of what the machine's other cores leave
// idle.

// copyBufs are Put's copy buffers: large, so that a big upload is
// written to the object in few, large writes.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// Written is what Put wrote: the number of bytes and their checksums,
// computed as the bytes were written (the object is never read back).
type Written struct {
	N      int64
	SHA256 string // hex
	CRC32C uint32 // Castagnoli
}

// castagnoli is the CRC32C table (the CPU's CRC32 instruction where it
// has one).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC32C of b.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// summer computes both of Written's checksums of what is written to it.
type summer struct {
	sha hash.Hash
	crc uint32
}

func (s *summer) Write(p []byte) (int, error) {
	s.sha.Write(p)
	s.crc = crc32.Update(s.crc, castagnoli, p)
	return len(p), nil
}

func (s *summer) written(n int64) Written {
	return Written{N: n, SHA256: hex.EncodeToString(s.sha.Sum(nil)), CRC32C: s.crc}
}

// pipelineMin is the smallest upload checksummed on its own goroutine;
// below it the hand-offs cost more than they overlap.
const pipelineMin = 4 << 20

// copySummed copies at most limit bytes of r to w and returns what it
// wrote (an error once r has more). Each read is written as it comes:
// filling the buffer first (one 1 MiB write instead of several smaller
// ones) cost several times the kernel time per byte written on ext4.
func copySummed(w io.Writer, r io.Reader, limit int64) (Written, error) {
	if limit >= pipelineMin {
		return copySummedPipelined(w, r, limit)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	sm := &summer{sha: sha256.New()}
	n, err := io.CopyBuffer(io.MultiWriter(w, sm), io.LimitReader(r, limit+1), *buf)
	if err == nil && n > limit {
		err = fmt.Errorf("more than %d bytes", limit)
	}
	return sm.written(n), err
}

// pipelineBufs is how many buffers a pipelined copy cycles through: one
// being read into, one being written, the rest queued for the
// checksums.
const pipelineBufs = 4

// pipelineChunk is the least a pipelined copy reads before it hands the
// bytes to the checksums and writes them.
const pipelineChunk = 256 << 10

// copySummedPipelined is copySummed with the checksums on a second
// goroutine: this one reads a chunk and writes it, the other one sums
// it, and a buffer is read into again only once both are done with it.
func copySummedPipelined(w io.Writer, r io.Reader, limit int64) (Written, error) {
	var bufs [pipelineBufs]*[]byte
	free := make(chan []byte, pipelineBufs)
	for i := range bufs {
		bufs[i] = copyBufs.Get().(*[]byte)
		free <- *bufs[i]
	}
	defer func() {
		for _, b := range bufs {
			copyBufs.Put(b)
		}
	}()
	sums := make(chan []byte, pipelineBufs)
	sm := &summer{sha: sha256.New()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range sums {
			sm.Write(b)
			free <- b[:cap(b)]
		}
	}()
	lr := io.LimitReader(r, limit+1)
	var (
		n   int64
		err error
	)
	for {
		b := <-free
		// A chunk of at least pipelineChunk bytes per hand-off: a
		// socket read returns far less, and a hand-off per read costs
		// two goroutine wake-ups.
		m, rerr := io.ReadAtLeast(lr, b, pipelineChunk)
		if rerr == io.ErrUnexpectedEOF {
			rerr = io.EOF
		}
		if m > 0 {
			sums <- b[:m]
			wm, werr := w.Write(b[:m])
			n += int64(wm)
			if werr == nil && wm < m {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				err = werr
				break
			}
		} else {
			free <- b
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	close(sums)
	<-done // the buffers go back to the pool only once summed
	if err == nil && n > limit {
		err = fmt.Errorf("more than %d bytes", limit)
	}
	return sm.written(n), err
}
