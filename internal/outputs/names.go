package outputs

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Default limits (config: outputs.max_file_size, outputs.max_files).
const (
	// DefaultMaxFileSize bounds one output file (10 GiB).
	DefaultMaxFileSize int64 = 10 << 30
	// DefaultMaxFiles bounds the number of outputs of one task.
	DefaultMaxFiles = 1000
	// MaxNameBytes bounds an output name.
	MaxNameBytes = 255
	// MaxContentTypeBytes bounds a content type.
	MaxContentTypeBytes = 255
)

// Limits bound what one task may upload.
type Limits struct {
	MaxFileSize int64
	MaxFiles    int
}

// WithDefaults returns l with zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultMaxFileSize
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	return l
}

// ValidateName checks an output name: a plain file name (no directory
// part), 1..255 bytes of UTF-8 without control characters, not "." or
// "..", and not starting with "." (hidden files are the handler's
// scratch). The error names the output and the rule it breaks.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("output name is empty")
	case len(name) > MaxNameBytes:
		return fmt.Errorf("output %.40q…: name is %d bytes; the limit is %d", name, len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("output %q: name is not valid UTF-8", name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("output %q: name contains a NUL byte", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("output %q: name contains a path separator; outputs are plain files directly in $DROVER_OUTPUT_DIR", name)
	case name == "." || name == "..":
		return fmt.Errorf("output %q: not a file name", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("output %q: names starting with '.' are not uploaded", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("output %q: name contains a control character", name)
		}
	}
	return nil
}

// ValidateContentType checks a declared content type: "type/subtype"
// optionally followed by parameters, printable ASCII, at most 255 bytes.
func ValidateContentType(name, ct string) error {
	if ct == "" {
		return fmt.Errorf("output %q: content_type is required", name)
	}
	if len(ct) > MaxContentTypeBytes {
		return fmt.Errorf("output %q: content_type is %d bytes; the limit is %d", name, len(ct), MaxContentTypeBytes)
	}
	for i := 0; i < len(ct); i++ {
		if ct[i] < 0x20 || ct[i] > 0x7e {
			return fmt.Errorf("output %q: content_type has a non-printable byte", name)
		}
	}
	mt, _, _ := strings.Cut(ct, ";")
	if typ, sub, ok := strings.Cut(strings.TrimSpace(mt), "/"); !ok || typ == "" || sub == "" {
		return fmt.Errorf("output %q: content_type %q is not type/subtype", name, ct)
	}
	return nil
}

// ValidateSHA256 checks a lowercase hex SHA-256.
func ValidateSHA256(name, sum string) error {
	if len(sum) != 64 {
		return fmt.Errorf("output %q: sha256 must be 64 hex digits", name)
	}
	for i := 0; i < len(sum); i++ {
		c := sum[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("output %q: sha256 must be lowercase hex", name)
		}
	}
	return nil
}

// Entry is one line of a manifest.
type Entry struct {
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
	// MD5 and PartMD5 are the optional MD5s (hex) of a file uploaded in
	// one PUT and of each part of a multipart upload.
	MD5     string   `json:"md5,omitempty"`
	PartMD5 []string `json:"part_md5,omitempty"`
}

// ValidateManifest checks every entry (name, size within limits, hash,
// content type) and that names are unique and the count within limits.
// The error names the file and the limit.
func ValidateManifest(entries []Entry, l Limits) error {
	l = l.WithDefaults()
	if len(entries) > l.MaxFiles {
		return fmt.Errorf("%d outputs; the limit is %d files per task", len(entries), l.MaxFiles)
	}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if err := ValidateName(e.Name); err != nil {
			return err
		}
		if seen[e.Name] {
			return fmt.Errorf("output %q: listed twice", e.Name)
		}
		seen[e.Name] = true
		if e.Size < 0 {
			return fmt.Errorf("output %q: negative size", e.Name)
		}
		if e.Size > l.MaxFileSize {
			return fmt.Errorf("output %q: %d bytes; the limit is %d bytes per file", e.Name, e.Size, l.MaxFileSize)
		}
		if err := ValidateSHA256(e.Name, e.SHA256); err != nil {
			return err
		}
		if err := ValidateContentType(e.Name, e.ContentType); err != nil {
			return err
		}
		if err := validateMD5s(e); err != nil {
			return err
		}
	}
	return nil
}

// MaxParts is the most parts a multipart upload has (S3's limit).
const MaxParts = 10000

func validateMD5s(e Entry) error {
	if e.MD5 != "" && !isHex(e.MD5, 32) {
		return fmt.Errorf("output %q: md5 must be 32 lowercase hex digits", e.Name)
	}
	if len(e.PartMD5) > MaxParts {
		return fmt.Errorf("output %q: %d part MD5s; the limit is %d parts", e.Name, len(e.PartMD5), MaxParts)
	}
	for i, m := range e.PartMD5 {
		if !isHex(m, 32) {
			return fmt.Errorf("output %q: part_md5[%d] must be 32 lowercase hex digits", e.Name, i)
		}
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Key returns the object key of an output of one attempt: the lease token
// is part of the key, so attempts never overwrite each other and a URL
// signed for one lease cannot touch another's objects.
func Key(taskID, leaseToken, name string) string {
	return "tasks/" + taskID + "/" + leaseToken + "/" + name
}

// ParamsKey is the params field by which a task may list its required
// outputs: {"drover_outputs": ["video.mp4"]}.
const ParamsKey = "drover_outputs"

// ParamsRequired returns the required outputs a task's params list under
// ParamsKey (none when absent or not a list of strings).
func ParamsRequired(params []byte) []string {
	if len(params) == 0 {
		return nil
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	raw, ok := p[ParamsKey]
	if !ok {
		return nil
	}
	var names []string
	if json.Unmarshal(raw, &names) != nil {
		return nil
	}
	return names
}
