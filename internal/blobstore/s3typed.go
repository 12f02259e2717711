package blobstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
)

// BindsContentType reports whether UploadURLFor's URLs bind the
// Content-Type: an S3 bucket's presigned PUT signs the header, so the
// store refuses a PUT that sends another type (SignatureDoesNotMatch)
// and an object uploaded through the URL is stored with that type. (A
// server that checks no signatures, such as SeaweedFS without
// -s3.config, enforces nothing, the bytes' MD5 included.)
func (s *Store) BindsContentType() bool { return s.s3 != nil }

// UploadURLFor is UploadURL with the Content-Type bound into the
// signature where the store can (BindsContentType and contentType not
// empty); the uploader must then send exactly that header.
func (s *Store) UploadURLFor(ctx context.Context, key, contentType string, expiry time.Duration) (string, error) {
	if s.s3 == nil || contentType == "" {
		return s.UploadURL(ctx, key, expiry)
	}
	p, err := s3.NewPresignClient(s.s3.client, s3.WithPresignExpires(expiry)).PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucketName(s.url[len("s3://"):])), Key: aws.String(key), ContentType: aws.String(contentType),
	})
	if err != nil {
		return "", fmt.Errorf("sign upload of %s: %w", key, err)
	}
	return p.URL, nil
}

// List returns the size and, where the listing carries one, the MD5 of
// every object under prefix, by key (one request per 1,000 objects on
// S3, where a Stat is one request per object). An S3 listing has the
// MD5 of an object uploaded in one PUT (its ETag), none of a multipart
// upload's object, and neither the content type nor the ETag itself.
func (s *Store) List(ctx context.Context, prefix string) (map[string]Attrs, error) {
	out := map[string]Attrs{}
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		if obj.IsDir {
			continue
		}
		a := Attrs{Size: obj.Size}
		if len(obj.MD5) == 16 {
			a.MD5 = hex.EncodeToString(obj.MD5)
		}
		out[obj.Key] = a
	}
}
