package outputsvc_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/outputsvc"
)

// benchSize is the large file of BenchmarkUpload (DROVER_BENCH_UPLOAD_MIB,
// default 256 MiB; the figure is 1 GiB).
func benchSize() int64 {
	if v, err := strconv.Atoi(os.Getenv("DROVER_BENCH_UPLOAD_MIB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	return 256 << 20
}

func writeRandom(b *testing.B, path string, size int64) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// heapPeak samples the heap in use while fn runs and returns the peak
// growth over the heap before it.
func heapPeak(fn func()) uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base && m.HeapInuse-base > peak.Load() {
				peak.Store(m.HeapInuse - base)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	return peak.Load()
}

// BenchmarkUpload measures the agent's upload path (grant, streaming PUT
// from disk, completion with server-side verification) to the embedded
// store and to a loopback S3, against a plain HTTP PUT of the same bytes
// into a file (the `curl --upload-file` ceiling).
func BenchmarkUpload(b *testing.B) {
	dir := b.TempDir()
	big := filepath.Join(dir, "big.bin")
	size := benchSize()
	writeRandom(b, big, size)
	small := make([]string, 1000)
	for i := range small {
		small[i] = filepath.Join(dir, fmt.Sprintf("s%04d.bin", i))
		writeRandom(b, small[i], 100<<10)
	}
	sets := map[string][]string{fmt.Sprintf("1x%dMiB", size>>20): {big}, "1000x100KiB": small}

	for setName, files := range sets {
		var total int64
		for _, f := range files {
			st, _ := os.Stat(f)
			total += st.Size()
		}
		b.Run("ceiling-plain-put/"+setName, func(b *testing.B) {
			sink := b.TempDir()
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				f, err := os.Create(filepath.Join(sink, filepath.Base(r.URL.Path)))
				if err == nil {
					_, err = io.Copy(f, r.Body)
					f.Close()
				}
				if err != nil {
					http.Error(w, err.Error(), 500)
				}
			}))
			defer hs.Close()
			c := mustClient(b, hs.URL, "")
			b.SetBytes(total)
			for b.Loop() {
				parallel(files, func(p string) error {
					f, err := os.Open(p)
					if err != nil {
						return err
					}
					defer f.Close()
					st, _ := f.Stat()
					_, err = c.PutObject(b.Context(), "/"+filepath.Base(p), nil, f, st.Size())
					return err
				})
			}
			b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
		})
		for name, mk := range backends(b) {
			if name == "s3" && setName != "1000x100KiB" && size > 256<<20 {
				continue // gofakes3 keeps objects in memory
			}
			b.Run(name+"/"+setName, func(b *testing.B) {
				e := newEnv(b, mk(b), func(c *outputsvc.Config) { c.PartSize = 64 << 20 })
				w := e.addWorker(b)
				b.SetBytes(total)
				var peak uint64
				for b.Loop() {
					task := e.submit(b, e.op, "bench", `{}`, 1)
					lease := e.claim(b, w)
					req := make([]wire.UploadFile, len(files))
					manifest := make([]wire.OutputEntry, len(files))
					for i, p := range files {
						st, _ := os.Stat(p)
						req[i] = wire.UploadFile{Name: filepath.Base(p), Size: st.Size(), ContentType: "application/octet-stream"}
					}
					tgs, err := w.c.UploadURLs(b.Context(), w.id, lease, req)
					if err != nil {
						b.Fatal(err)
					}
					p := heapPeak(func() {
						parallel(files, func(p string) error {
							i := indexOf(files, p)
							sz, sum, err := hashPath(p)
							if err != nil {
								return err
							}
							manifest[i] = wire.OutputEntry{Name: req[i].Name, Size: sz, SHA256: sum, ContentType: req[i].ContentType}
							return putFile(b, w.c, w, lease, tgs[i], p, sz)
						})
					})
					peak = max(peak, p)
					if err := w.c.CompleteOutputs(b.Context(), w.id, lease, json.RawMessage(`{}`), manifest); err != nil {
						b.Fatal(err)
					}
					_ = task
				}
				b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			})
		}
	}
}

func parallel(files []string, fn func(string) error) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(f); err != nil {
				once.Do(func() { first = err })
			}
		}()
	}
	wg.Wait()
	if first != nil {
		panic(first)
	}
}

func indexOf(files []string, p string) int {
	for i, f := range files {
		if f == p {
			return i
		}
	}
	return -1
}

func hashPath(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// putFile uploads one file the way the agent does: one streaming PUT, or
// its parts.
func putFile(b *testing.B, c *client.Client, w *worker, lease wire.Lease, tg wire.UploadTarget, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if len(tg.PartURLs) == 0 {
		_, err = c.PutObject(b.Context(), tg.URL, tg.Headers, f, size)
		return err
	}
	etags := make([]string, len(tg.PartURLs))
	for i, u := range tg.PartURLs {
		off := int64(i) * tg.PartSize
		n := min(tg.PartSize, size-off)
		if etags[i], err = c.PutObject(b.Context(), u, nil, io.NewSectionReader(f, off, n), n); err != nil {
			return err
		}
	}
	return c.CompleteMultipart(b.Context(), w.id, lease, tg.Name, tg.UploadID, etags)
}
