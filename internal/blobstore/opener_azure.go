//go:build drover_azure

package blobstore

// azblob:// containers (build with -tags drover_azure).
import _ "gocloud.dev/blob/azureblob"
