package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/spf13/cobra"
)

// batchItem is one task of a --batch file and the line it came from.
type batchItem struct {
	line int
	req  wire.SubmitRequest
}

// submitBatch implements `drover submit --batch FILE|-`: one JSON task per
// line, all checked before anything is sent, submitted in batches of up to
// wire.MaxBatchTasks, ids printed in file order.
func submitBatch(cmd *cobra.Command, path string, asJSON bool) error {
	var in io.Reader
	name := path
	if path == "-" {
		in, name = cmd.InOrStdin(), "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("submit --batch: %w", err)
		}
		defer f.Close()
		in = f
	}
	items, err := readBatch(in)
	if err != nil {
		return fmt.Errorf("submit --batch %s: %w", name, err)
	}
	if len(items) == 0 {
		return fmt.Errorf("submit --batch %s: no tasks (one JSON task per line)", name)
	}
	if len(items) > wire.MaxBatchTasks {
		for _, it := range items {
			for _, d := range it.req.DependsOn {
				if strings.HasPrefix(d, "#") {
					return fmt.Errorf("submit --batch %s: line %d: depends_on %q: #N references need the whole file in one batch of at most %d tasks (this file has %d)",
						name, it.line, d, wire.MaxBatchTasks, len(items))
				}
			}
		}
	}
	c, err := newCLIClient(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var all []wire.SubmitResponse
	for start := 0; start < len(items); start += wire.MaxBatchTasks {
		chunk := items[start:min(start+wire.MaxBatchTasks, len(items))]
		reqs := make([]wire.SubmitRequest, len(chunk))
		for i, it := range chunk {
			reqs[i] = it.req
		}
		res, err := c.SubmitBatch(cmd.Context(), reqs)
		if err != nil {
			err = lineError(err, chunk)
			if start > 0 {
				return fmt.Errorf("submit --batch %s: %w (the %d tasks before line %d were submitted; their ids are above)", name, err, start, chunk[0].line)
			}
			return fmt.Errorf("submit --batch %s: %w; nothing was submitted", name, err)
		}
		if !asJSON {
			for _, r := range res {
				fmt.Fprintln(out, r.Task.ID)
			}
		}
		all = append(all, res...)
	}
	if asJSON {
		return printJSON(out, all)
	}
	return nil
}

// readBatch reads one JSON task per line (blank lines skipped), strictly:
// unknown fields, trailing data and a missing type are errors naming the
// line.
func readBatch(r io.Reader) ([]batchItem, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var items []batchItem
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read line %d: %w", n, err)
		}
		if len(line) > wire.MaxSubmitBody {
			return nil, fmt.Errorf("line %d: %d bytes, over the limit of %d for one task", n, len(line), wire.MaxSubmitBody)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			req, derr := decodeBatchLine(trimmed)
			if derr != nil {
				return nil, fmt.Errorf("line %d: %w; nothing was submitted", n, derr)
			}
			items = append(items, batchItem{line: n, req: req})
		}
		if errors.Is(err, io.EOF) {
			return items, nil
		}
	}
}

func decodeBatchLine(b []byte) (wire.SubmitRequest, error) {
	var req wire.SubmitRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("not a JSON task: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return req, errors.New("more than one JSON value on the line")
	}
	if req.Type == "" {
		return req, errors.New(`type: is required (e.g. {"type":"render","params":{…}})`)
	}
	return req, nil
}

var taskIndexRe = regexp.MustCompile(`^tasks\[(\d+)\]\.?`)

// lineError names the file line of the task a server error points at
// (field tasks[i].…).
func lineError(err error, chunk []batchItem) error {
	e, ok := errors.AsType[*client.Error](err)
	if !ok {
		return err
	}
	m := taskIndexRe.FindStringSubmatch(e.Field)
	if m == nil {
		return err
	}
	i, convErr := strconv.Atoi(m[1])
	if convErr != nil || i >= len(chunk) {
		return err
	}
	field := strings.TrimPrefix(e.Field, m[0])
	if field == "" {
		field = "task"
	}
	return fmt.Errorf("line %d: %s: %s (%d %s)", chunk[i].line, field, e.Message, e.Status, e.Code)
}
