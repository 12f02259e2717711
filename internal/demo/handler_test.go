package demo

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunHandler(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name   string
		params string
		code   int
		errHas string
	}{
		{"bad json", `{"tile":`, 3, "params"},
		{"unknown field", `{"tile":0,"cols":1,"rows":1,"size":8,"iter":10,"samples":1,"out":"` + dir + `","zoom":2}`, 3, "unknown field"},
		{"tile out of range", `{"tile":4,"cols":2,"rows":2,"size":8,"iter":10,"samples":1,"out":"` + dir + `"}`, 3, "tile: 4 out of range 0..3"},
		{"relative out", `{"tile":0,"cols":1,"rows":1,"size":8,"iter":10,"samples":1,"out":"tiles"}`, 3, "out:"},
		{"size too big", `{"tile":0,"cols":1,"rows":1,"size":4096,"iter":10,"samples":1,"out":"` + dir + `"}`, 3, "size: 4096 out of range 8..2048"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := RunHandler(strings.NewReader(c.params), &out, &errb); code != c.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, c.code, errb.String())
			}
			if !strings.Contains(errb.String(), c.errHas) {
				t.Fatalf("stderr %q lacks %q", errb.String(), c.errHas)
			}
		})
	}
}

func TestRenderAndAssemble(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 3; i++ { // 2×2 grid, 3 tiles: the fourth cell stays black
		var out, errb bytes.Buffer
		p, _ := json.Marshal(Tile{Index: i, Cols: 2, Rows: 2, Size: 16, Iter: 50, Samples: 1, Out: dir})
		if code := RunHandler(bytes.NewReader(p), &out, &errb); code != 0 {
			t.Fatalf("tile %d: exit %d: %s", i, code, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var res HandlerResult
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
			t.Fatalf("last stdout line %q: %v", lines[len(lines)-1], err)
		}
		if res.Tile != i || res.PNG != filepath.Join(dir, "tile-00"+string(rune('0'+i))+".png") {
			t.Fatalf("result %+v", res)
		}
		if !strings.Contains(out.String(), "DROVER_PROGRESS 1.000") {
			t.Fatalf("no final progress line in %q", out.String())
		}
	}
	img := filepath.Join(dir, "all.png")
	if err := Assemble(dir, 2, 2, 3, img); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := m.Bounds(); b.Dx() != 32 || b.Dy() != 32 {
		t.Fatalf("stitched image is %v", b)
	}
	if err := Assemble(dir, 2, 2, 4, img); err == nil {
		t.Fatal("missing tile not reported")
	}
}
