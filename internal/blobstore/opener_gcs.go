//go:build drover_gcs

package blobstore

// gs:// buckets (build with -tags drover_gcs).
import _ "gocloud.dev/blob/gcsblob"
