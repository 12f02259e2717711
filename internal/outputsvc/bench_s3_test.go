package outputsvc_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/droverhq/drover/internal/bench"
	"github.com/droverhq/drover/internal/blobstore"
)

// benchS3 returns the S3 of BenchmarkUpload's s3 cases, its base URL and
// its s3:// store URL: gofakes3 in process (fakeS3), or, when
// DROVER_BENCH_S3_ENDPOINT is set (http://127.0.0.1:8333 for
// scripts/bench-seaweedfs.sh), that server, with the bucket
// DROVER_BENCH_S3_BUCKET (default "drover-bench"), which is created here
// if it is not there. The credentials are AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (placeholders when unset, for a server without
// authentication such as `weed mini` without -s3.config) and the region
// AWS_REGION (default us-east-1).
func benchS3(b *testing.B) (string, string) {
	ep := os.Getenv("DROVER_BENCH_S3_ENDPOINT")
	if ep == "" {
		return fakeS3(b)
	}
	serverCPU(b)
	bucket := os.Getenv("DROVER_BENCH_S3_BUCKET")
	if bucket == "" {
		bucket = "drover-bench"
	}
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"} {
		if os.Getenv(k) == "" {
			b.Setenv(k, v)
		}
	}
	region := os.Getenv("AWS_REGION")
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(ep), Region: region, UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: os.Getenv("AWS_SESSION_TOKEN")}, nil
		}),
	})
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			b.Fatalf("create bucket %s at %s: %v", bucket, ep, err)
		}
	}
	storeURL := "s3://" + bucket + "?region=" + url.QueryEscape(region) + "&use_path_style=true&endpoint=" + url.QueryEscape(ep)
	// One object first, outside the timer: a new SeaweedFS allocates the
	// bucket's volumes at its first write.
	st, err := blobstore.Open(ctx, storeURL)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Put(ctx, "warm-up", "application/octet-stream", bytes.NewReader(make([]byte, 1<<20)), 1<<20); err != nil {
		b.Fatalf("warm-up object: %v", err)
	}
	return ep, storeURL
}

// serverCPU reports, as server-cpu-ms/op, the CPU time (user + system)
// that the S3 server's process, DROVER_BENCH_S3_PID (set by
// scripts/bench-seaweedfs.sh), spent from now until the sub-benchmark
// ends, per iteration: beside cpu-ms/op (this process: the agent and the
// Drover server) it is the other half of what an upload costs the
// machine. It includes the untimed bucket check and warm-up object.
func serverCPU(b *testing.B) {
	pid := os.Getenv("DROVER_BENCH_S3_PID")
	if pid == "" {
		return
	}
	read := func() time.Duration {
		raw, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return -1
		}
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
		if len(f) < 13 {
			return -1
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	start := read()
	b.Cleanup(func() {
		if end := read(); start >= 0 && end >= 0 && b.N > 0 {
			b.ReportMetric(float64((end-start).Milliseconds())/float64(b.N), "server-cpu-ms/op")
		}
	})
}

// s3OnDisk reports whether the s3 cases run against an external server
// (DROVER_BENCH_S3_ENDPOINT), which writes the objects to this machine's
// disk: each iteration then settles the dirty pages outside the timer,
// as the embedded store's cases do, so that none pays for the writeback
// of the iteration or the sub-benchmark before it.
func s3OnDisk() bool { return os.Getenv("DROVER_BENCH_S3_ENDPOINT") != "" }

// s3Ceiling is the ceiling of the s3 cases: a plain PUT of every file
// (an *os.File body, no Content-Type, no checksum: what
// `curl --upload-file` does), DefaultUploadParallel at once, to a URL
// presigned with the AWS SDK by the store (as the agent's are; a server
// without authentication ignores the signature), each iteration under a
// new prefix. The presigning is outside the timer.
func s3Ceiling(b *testing.B, files []string, total int64) {
	base, storeURL := benchS3(b)
	st, err := blobstore.Open(b.Context(), storeURL)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c := mustClient(b, base, "")
	b.SetBytes(total)
	iter := 0
	prefix := "plain/" + strconv.FormatInt(time.Now().UnixNano(), 36) + "/"
	urls := make(map[string]string, len(files))
	cpu := bench.ProcessCPU()
	for b.Loop() {
		b.StopTimer()
		iter++
		for _, p := range files {
			u, err := st.UploadURL(b.Context(), prefix+strconv.Itoa(iter)+"/"+filepath.Base(p), time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			urls[p] = u
		}
		b.StartTimer()
		parallel(files, func(p string) error { return putFile(b, c, urls[p], p) })
		if s3OnDisk() {
			settle(b)
		}
	}
	reportCPU(b, bench.ProcessCPU()-cpu)
	b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}
