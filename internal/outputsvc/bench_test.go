package outputsvc_test

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/agent"
	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/bench"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/outputsvc"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"golang.org/x/sys/unix"
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

// settle writes every dirty page back, outside the timer, so that each
// iteration starts with none: without it an iteration pays for the
// writeback of the one before it (1 GiB at a time), or of another
// sub-benchmark's.
func settle(b *testing.B) {
	b.StopTimer()
	unix.Sync()
	b.StartTimer()
}

// keepDir returns a new directory under root, the directory of the whole
// benchmark: nothing a sub-benchmark writes is deleted before every
// sub-benchmark has run. ext4 skips inodes freed in the last minute (six
// while their inode table block is dirty) when it allocates one, and a
// sub-benchmark that ran after another one's 10,000 files were deleted
// spent a sixth of its CPU time in that scan (perf: recently_deleted
// under __ext4_new_inode), a cost its ceiling, run first, never paid.
func keepDir(b *testing.B, root string) string {
	d, err := os.MkdirTemp(root, "run")
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// heapPeak samples the heap in use while fn runs and returns the peak
// growth over the heap before it. The garbage collection that settles
// the heap first is outside the timer, and the samples come from
// runtime/metrics, which does not stop the world (ReadMemStats would,
// a hundred times a second, a cost the ceiling does not pay).
func heapPeak(b *testing.B, fn func()) uint64 {
	b.StopTimer()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	b.StartTimer()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if h := read(); h > base && h-base > peak.Load() {
				peak.Store(h - base)
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

// fakeS3 starts an in-process S3 (gofakes3) with bucket "outputs" and
// returns its base URL and the s3:// store URL for it.
func fakeS3(b *testing.B) (string, string) {
	be := s3mem.New()
	if err := be.CreateBucket("outputs"); err != nil {
		b.Fatalf("create bucket: %v", err)
	}
	fs := httptest.NewServer(gofakes3.New(be).Server())
	b.Cleanup(fs.Close)
	b.Setenv("AWS_ACCESS_KEY_ID", "test")
	b.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	b.Setenv("AWS_REGION", "us-east-1")
	return fs.URL, "s3://outputs?region=us-east-1&use_path_style=true&endpoint=" + fs.URL
}

// BenchmarkUpload measures the agent's upload path (agent.Uploader: scan,
// grant, hash-while-streaming PUTs from disk, DefaultUploadParallel files
// in flight; then the completion, which the server verifies) to the
// embedded store and to a loopback S3, each beside its ceiling: a plain
// HTTP PUT of the same files by the same client at the same parallelism
// (what `curl --upload-file` does), into files on disk for the embedded
// store and into the same S3 for S3 (benchS3: gofakes3, or the server at
// DROVER_BENCH_S3_ENDPOINT, see scripts/bench-seaweedfs.sh).
//
//	DROVER_BENCH_UPLOAD_MIB=1024 go test -run '^$' -bench BenchmarkUpload -benchtime 2x ./internal/outputsvc
func BenchmarkUpload(b *testing.B) {
	root := b.TempDir()
	sets := uploadSets(b, root)
	for _, set := range sets {
		files, total := listSet(b, set.dir)
		b.Run("file-ceiling-plain-put/"+set.name, func(b *testing.B) {
			// Like the agent's objects, every iteration's files are new.
			hs := httptest.NewServer(sinkHandler(keepDir(b, root)))
			defer hs.Close()
			plainPuts(b, mustClient(b, hs.URL, ""), hs.URL+"/", files, total, true)
		})
		b.Run("s3-ceiling-plain-put/"+set.name, func(b *testing.B) {
			s3Ceiling(b, files, total)
		})
		for _, name := range []string{"file", "s3"} {
			b.Run(name+"/"+set.name, func(b *testing.B) {
				storeURL := filepath.Join(keepDir(b, root), "outputs")
				if name == "s3" {
					_, storeURL = benchS3(b)
				}
				e := newEnv(b, storeURL, func(c *outputsvc.Config) { c.PartSize = outputsvc.DefaultPartSize })
				w := e.addWorker(b)
				up := &agent.Uploader{API: agent.NewClientOutputAPI(w.c), WorkerID: w.id}
				b.SetBytes(total)
				var peak uint64
				cpu := bench.ProcessCPU()
				for b.Loop() {
					b.StopTimer() // not part of an upload
					e.submit(b, e.op, "bench", `{}`, 1)
					lease := e.claim(b, w)
					b.StartTimer()
					var manifest []wire.OutputEntry
					p := heapPeak(b, func() {
						var err error
						if manifest, err = up.Upload(b.Context(), lease, set.dir, nil); err != nil {
							b.Fatal(err)
						}
					})
					peak = max(peak, p)
					if err := w.c.CompleteOutputs(b.Context(), w.id, lease, json.RawMessage(`{}`), manifest); err != nil {
						b.Fatal(err)
					}
					if name == "file" || s3OnDisk() {
						settle(b)
					}
				}
				reportCPU(b, bench.ProcessCPU()-cpu)
				b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			})
		}
	}
}

// plainPuts is the ceiling: PUT every file (an *os.File body, so the
// transport may sendfile) to prefix+"<iteration>/"+name,
// DefaultUploadParallel at once; onDisk settles the sink's dirty pages
// after each iteration, as the agent's run against the embedded store
// does.
func plainPuts(b *testing.B, c *client.Client, prefix string, files []string, total int64, onDisk bool) {
	b.SetBytes(total)
	iter := 0
	cpu := bench.ProcessCPU()
	for b.Loop() {
		iter++
		putSet(b, c, prefix+strconv.Itoa(iter)+"/", files)
		if onDisk {
			settle(b)
		}
	}
	reportCPU(b, bench.ProcessCPU()-cpu)
	b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// reportCPU reports the process's CPU time per operation (both ends of
// the upload run in this process; the submit and claim outside the timer
// are counted too, a few milliseconds).
func reportCPU(b *testing.B, d time.Duration) {
	if d > 0 {
		b.ReportMetric(float64(d.Milliseconds())/float64(b.N), "cpu-ms/op")
	}
}

func parallel(files []string, fn func(string) error) {
	sem := make(chan struct{}, agent.DefaultUploadParallel)
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
