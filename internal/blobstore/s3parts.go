package blobstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
)

// MinPartSize is S3's smallest part (except the last).
const MinPartSize = 5 << 20

// s3Parts presigns S3 multipart uploads, so that an agent uploads a large
// file in parts directly to the bucket (each part retried on its own).
type s3Parts struct {
	client *s3.Client
}

func newS3Parts(b *blob.Bucket) *s3Parts {
	var c *s3.Client
	if !b.As(&c) || c == nil {
		return nil
	}
	return &s3Parts{client: c}
}

// Multipart reports whether the store can presign multipart uploads.
func (s *Store) Multipart() bool { return s.s3 != nil }

// MultipartUpload is a started multipart upload with one presigned URL
// per part.
type MultipartUpload struct {
	UploadID string
	PartURLs []string
}

// StartMultipart starts a multipart upload of key in parts of partSize
// bytes and presigns one PUT URL per part.
func (s *Store) StartMultipart(ctx context.Context, key, contentType string, size, partSize int64, expiry time.Duration) (*MultipartUpload, error) {
	if s.s3 == nil {
		return nil, errors.New("blobstore: multipart needs an s3:// store")
	}
	name := bucketName(s.url[len("s3://"):])
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(name), Key: aws.String(key)}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	out, err := s.s3.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("start multipart upload of %s: %w", key, err)
	}
	n := int((size + partSize - 1) / partSize)
	if n == 0 {
		n = 1
	}
	pc := s3.NewPresignClient(s.s3.client, s3.WithPresignExpires(expiry))
	mu := &MultipartUpload{UploadID: aws.ToString(out.UploadId)}
	for i := 1; i <= n; i++ {
		p, err := pc.PresignUploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(name), Key: aws.String(key), UploadId: out.UploadId, PartNumber: aws.Int32(int32(i)),
		})
		if err != nil {
			_ = s.AbortMultipart(ctx, key, mu.UploadID)
			return nil, fmt.Errorf("presign part %d of %s: %w", i, key, err)
		}
		mu.PartURLs = append(mu.PartURLs, p.URL)
	}
	return mu, nil
}

// CompleteMultipart assembles the parts (ETags in part order).
func (s *Store) CompleteMultipart(ctx context.Context, key, uploadID string, etags []string) error {
	if s.s3 == nil {
		return errors.New("blobstore: multipart needs an s3:// store")
	}
	parts := make([]types.CompletedPart, len(etags))
	for i, e := range etags {
		parts[i] = types.CompletedPart{ETag: aws.String(e), PartNumber: aws.Int32(int32(i + 1))}
	}
	_, err := s.s3.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucketName(s.url[len("s3://"):])), Key: aws.String(key), UploadId: aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return fmt.Errorf("complete multipart upload of %s: %w", key, err)
	}
	return nil
}

// AbortMultipart abandons a multipart upload.
func (s *Store) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if s.s3 == nil {
		return nil
	}
	_, err := s.s3.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(bucketName(s.url[len("s3://"):])), Key: aws.String(key), UploadId: aws.String(uploadID),
	})
	if err != nil {
		return fmt.Errorf("abort multipart upload of %s: %w", key, err)
	}
	return nil
}

// PendingUploads lists the keys of the unfinished multipart uploads under
// prefix (none for a store without multipart uploads).
func (s *Store) PendingUploads(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	err := s.eachPendingUpload(ctx, prefix, func(key, _ string) error {
		keys = append(keys, key)
		return nil
	})
	return keys, err
}

// AbortUploadsExcept abandons the unfinished multipart uploads under
// prefix whose key is not under keep: the parts a killed attempt sent.
func (s *Store) AbortUploadsExcept(ctx context.Context, prefix, keep string) error {
	return s.eachPendingUpload(ctx, prefix, func(key, id string) error {
		if strings.HasPrefix(key, keep) {
			return nil
		}
		return s.AbortMultipart(ctx, key, id)
	})
}

func (s *Store) eachPendingUpload(ctx context.Context, prefix string, fn func(key, uploadID string) error) error {
	if s.s3 == nil {
		return nil
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucketName(s.url[len("s3://"):])), Prefix: aws.String(prefix)}
	for {
		out, err := s.s3.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return fmt.Errorf("list multipart uploads under %s: %w", prefix, err)
		}
		for _, u := range out.Uploads {
			if err := fn(aws.ToString(u.Key), aws.ToString(u.UploadId)); err != nil {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}
