package wire

import (
	"time"

	"github.com/google/uuid"
)

// OutputEntry is one file of a completion's manifest.
type OutputEntry struct {
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
	// MD5 (hex) of a file uploaded in one PUT, and PartMD5 of each part
	// of a multipart upload, computed in the same pass as SHA-256 when
	// the upload target asks for them (UploadTarget.MD5): a bucket's
	// server checks them against the ETags the store computed, instead
	// of reading every object back. Optional.
	MD5     string   `json:"md5,omitempty"`
	PartMD5 []string `json:"part_md5,omitempty"`
}

// UploadFile is one file an agent wants to upload.
type UploadFile struct {
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
}

// UploadURLsRequest is the body of POST /v1/tasks/{id}/outputs/uploads.
type UploadURLsRequest struct {
	WorkerID   uuid.UUID    `json:"worker_id"`
	LeaseToken uuid.UUID    `json:"lease_token"`
	Files      []UploadFile `json:"files"`
}

// LeaseHolder returns the worker and lease token an upload grant presents.
func (r *UploadURLsRequest) LeaseHolder() (workerID, token uuid.UUID) {
	return r.WorkerID, r.LeaseToken
}

// UploadTarget says where to PUT one file. URL is absolute (a bucket's
// presigned URL) or a path on the Drover server (the embedded store),
// which the client resolves against its server URL; it carries its own
// authorisation, so no bearer token is sent with it. A multipart target
// has PartURLs instead (each part PartSize bytes, the last one shorter)
// and is finished with POST /v1/tasks/{id}/outputs/multipart.
type UploadTarget struct {
	Name     string            `json:"name"`
	Method   string            `json:"method"`
	URL      string            `json:"url,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	UploadID string            `json:"upload_id,omitempty"`
	PartSize int64             `json:"part_size,omitempty"`
	PartURLs []string          `json:"part_urls,omitempty"`
	// MD5 asks the uploader to report the MD5 of the file (of each part
	// for a multipart target) in the manifest (OutputEntry.MD5, PartMD5).
	MD5 bool `json:"md5,omitempty"`
	// Checksum, when "crc32c" (ChecksumCRC32C), lets the uploader send
	// the CRC32C of the body in the ChecksumHeader header (or trailer,
	// for a body it streams) instead of hashing the file with SHA-256
	// itself: the server (the embedded store) checks the CRC32C of the
	// bytes it received, refuses the upload when it differs, and answers
	// with the SHA-256 of the stored bytes as the ETag (quoted hex), which
	// the uploader reports in the manifest. Without a checked CRC32C the
	// answer has no ETag (a proxy may drop a trailer), and the uploader
	// hashes the file itself, as one that ignores the field does.
	Checksum string `json:"checksum,omitempty"`
	// Batch says the file may go in a POST /v1/blobs with other small
	// files (BlobsContentType) instead of its own PUT.
	Batch     bool      `json:"batch,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ChecksumCRC32C is UploadTarget.Checksum for a CRC32C (Castagnoli) of
// the body, sent base64-encoded, big-endian, in ChecksumHeader, as S3's
// x-amz-checksum-crc32c.
const ChecksumCRC32C = "crc32c"

// ChecksumHeader carries the CRC32C of an upload's body.
const ChecksumHeader = "X-Drover-Checksum-Crc32c"

// UploadURLsResponse answers POST /v1/tasks/{id}/outputs/uploads, one
// target per file in request order.
type UploadURLsResponse struct {
	Uploads []UploadTarget `json:"uploads"`
}

// MultipartCompleteRequest is the body of POST
// /v1/tasks/{id}/outputs/multipart: the ETags of every part, in order.
type MultipartCompleteRequest struct {
	WorkerID   uuid.UUID `json:"worker_id"`
	LeaseToken uuid.UUID `json:"lease_token"`
	Name       string    `json:"name"`
	UploadID   string    `json:"upload_id"`
	ETags      []string  `json:"etags"`
}

// LeaseHolder returns the worker and lease token the call presents.
func (r *MultipartCompleteRequest) LeaseHolder() (workerID, token uuid.UUID) {
	return r.WorkerID, r.LeaseToken
}

// Output is one recorded output of a task.
type Output struct {
	Name        string    `json:"name"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	Attempt     int       `json:"attempt"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	// URL is the path of GET /v1/tasks/{id}/outputs/{name}.
	URL string `json:"url"`
}

// OutputsResponse answers GET /v1/tasks/{id}/outputs.
type OutputsResponse struct {
	TaskID  uuid.UUID `json:"task_id"`
	State   TaskState `json:"state"`
	Outputs []Output  `json:"outputs"`
}

// BlobsContentType is the body of POST /v1/blobs: several small uploads
// to the embedded store in one request (UploadTarget.Batch), each a frame
//
//	uvarint(len(token)) token uvarint(size) crc32c(4 bytes, big-endian) bytes[size]
//
// where token is the last path segment of the target's URL
// (/v1/blobs/{token}). Each frame is checked and stored on its own, as if
// PUT to its URL with the CRC32C header.
const BlobsContentType = "application/vnd.drover.blobs"

// Limits of one POST /v1/blobs: frames, bytes per frame (the batch is
// for small files), bytes of a token.
const (
	MaxBlobFrames    = 256
	MaxBlobFrameSize = 1 << 20
	MaxBlobToken     = 4096
)

// BlobResult is the outcome of one frame of POST /v1/blobs: the SHA-256
// (hex) of the stored bytes, or why nothing was stored (the error a PUT
// of the frame would have got, with its HTTP status).
type BlobResult struct {
	SHA256 string       `json:"sha256,omitempty"`
	Status int          `json:"status,omitempty"`
	Error  *ErrorDetail `json:"error,omitempty"`
}

// BlobsResponse answers POST /v1/blobs: one result per frame, in order.
type BlobsResponse struct {
	Results []BlobResult `json:"results"`
}
