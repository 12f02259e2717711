package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"
)

// TaskType is the task type the demo submits.
const TaskType = "demo.mandelbrot"

// Tile is the params of one demo task: tile Index of a Cols×Rows grid over
// the Mandelbrot set, Size pixels square, rendered with Samples² samples per
// pixel and at most Iter iterations, written as PNG into Out.
type Tile struct {
	Index   int    `json:"tile"`
	Cols    int    `json:"cols"`
	Rows    int    `json:"rows"`
	Size    int    `json:"size"`
	Iter    int    `json:"iter"`
	Samples int    `json:"samples"`
	Out     string `json:"out"`
	// HoldMS keeps the handler alive this long after rendering, reporting
	// progress; the demo gives its "victim" tile a hold so that killing the
	// worker that runs it always happens mid-task.
	HoldMS int `json:"hold_ms,omitempty"`
}

// Validate checks the params, naming the field and its limit.
func (t *Tile) Validate() error {
	switch {
	case t.Cols < 1 || t.Cols > 64:
		return fmt.Errorf("cols: %d out of range 1..64", t.Cols)
	case t.Rows < 1 || t.Rows > 64:
		return fmt.Errorf("rows: %d out of range 1..64", t.Rows)
	case t.Index < 0 || t.Index >= t.Cols*t.Rows:
		return fmt.Errorf("tile: %d out of range 0..%d", t.Index, t.Cols*t.Rows-1)
	case t.Size < 8 || t.Size > 2048:
		return fmt.Errorf("size: %d out of range 8..2048", t.Size)
	case t.Iter < 1 || t.Iter > 100000:
		return fmt.Errorf("iter: %d out of range 1..100000", t.Iter)
	case t.Samples < 1 || t.Samples > 8:
		return fmt.Errorf("samples: %d out of range 1..8", t.Samples)
	case t.HoldMS < 0 || t.HoldMS > 60000:
		return fmt.Errorf("hold_ms: %d out of range 0..60000", t.HoldMS)
	case t.Out == "" || !filepath.IsAbs(t.Out):
		return fmt.Errorf("out: %q must be an absolute directory", t.Out)
	}
	return nil
}

// Path returns the PNG file of the tile.
func (t *Tile) Path() string { return filepath.Join(t.Out, fmt.Sprintf("tile-%03d.png", t.Index)) }

// The view: x in [-2.25, 0.75], y in [-1, 1] (aspect 3:2).
const (
	viewX0, viewX1 = -2.25, 0.75
	viewY0, viewY1 = -1.0, 1.0
)

// Render draws the tile. progress, when non-nil, is called with the
// fraction done after each row.
func (t *Tile) Render(progress func(float64)) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, t.Size, t.Size))
	col, row := t.Index%t.Cols, t.Index/t.Cols
	w := (viewX1 - viewX0) / float64(t.Cols)
	h := (viewY1 - viewY0) / float64(t.Rows)
	x0, y0 := viewX0+float64(col)*w, viewY0+float64(row)*h
	px, py := w/float64(t.Size), h/float64(t.Size)
	s := t.Samples
	for y := 0; y < t.Size; y++ {
		for x := 0; x < t.Size; x++ {
			var r, g, b float64
			for sy := 0; sy < s; sy++ {
				for sx := 0; sx < s; sx++ {
					cx := x0 + (float64(x)+(float64(sx)+0.5)/float64(s))*px
					cy := y0 + (float64(y)+(float64(sy)+0.5)/float64(s))*py
					cr, cg, cb := shade(cx, cy, t.Iter)
					r, g, b = r+cr, g+cg, b+cb
				}
			}
			n := float64(s * s)
			img.SetRGBA(x, y, color.RGBA{uint8(r / n), uint8(g / n), uint8(b / n), 255})
		}
		if progress != nil && (y%16 == 15 || y == t.Size-1) {
			progress(float64(y+1) / float64(t.Size))
		}
	}
	return img
}

// shade returns the colour of point c: black inside the set, a smooth
// palette outside.
func shade(cx, cy float64, maxIter int) (float64, float64, float64) {
	var zx, zy float64
	i := 0
	for ; i < maxIter && zx*zx+zy*zy <= 256; i++ {
		zx, zy = zx*zx-zy*zy+cx, 2*zx*zy+cy
	}
	if i == maxIter {
		return 0, 0, 0
	}
	// Smooth iteration count.
	nu := float64(i) + 1 - math.Log2(math.Log2(zx*zx+zy*zy)/2)
	t := math.Mod(nu/48, 1)
	r := 9 * (1 - t) * t * t * t * 255
	g := 15 * (1 - t) * (1 - t) * t * t * 255
	b := 8.5 * (1 - t) * (1 - t) * (1 - t) * t * 255
	return math.Min(r, 255), math.Min(g, 255), math.Min(b, 255)
}

// HandlerResult is what the demo handler returns.
type HandlerResult struct {
	PNG  string `json:"png"`
	Tile int    `json:"tile"`
	// Output names the tile's task output, when stored as one.
	Output string `json:"output,omitempty"`
	MS     int64  `json:"ms"`
}

// RunHandler is `drover demo-handler`: it reads a Tile from stdin, renders
// it into a PNG, reports progress and prints the result JSON as its last
// stdout line. It returns the process exit code: 0, 3 for bad params (a
// final failure) or 1 for an I/O error (retryable).
func RunHandler(stdin io.Reader, stdout, stderr io.Writer) int {
	start := time.Now()
	var t Tile
	dec := json.NewDecoder(io.LimitReader(stdin, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		fmt.Fprintf(stderr, "demo-handler: params: %v\n", err)
		return 3
	}
	if err := t.Validate(); err != nil {
		fmt.Fprintf(stderr, "demo-handler: params: %v\n", err)
		return 3
	}
	fmt.Fprintf(stdout, "rendering tile %d of %d×%d (%dpx, %d iterations, %d² samples)\n", t.Index, t.Cols, t.Rows, t.Size, t.Iter, t.Samples)
	img := t.Render(func(f float64) { fmt.Fprintf(stdout, "DROVER_PROGRESS %.3f rows\n", f) })
	if t.HoldMS > 0 {
		fmt.Fprintf(stdout, "holding %d ms before writing the tile\n", t.HoldMS)
		time.Sleep(time.Duration(t.HoldMS) * time.Millisecond)
	}
	if err := writePNG(t.Path(), img); err != nil {
		fmt.Fprintf(stderr, "demo-handler: %v\n", err)
		return 1
	}
	res := HandlerResult{PNG: t.Path(), Tile: t.Index, MS: time.Since(start).Milliseconds()}
	// The tile is also a task output: the agent uploads what the handler
	// leaves in $DROVER_OUTPUT_DIR and the server keeps it after the pod.
	if dir := os.Getenv("DROVER_OUTPUT_DIR"); dir != "" {
		name := filepath.Base(t.Path())
		if err := writePNG(filepath.Join(dir, name), img); err != nil {
			fmt.Fprintf(stderr, "demo-handler: output: %v\n", err)
			return 1
		}
		res.Output = name
	}
	b, _ := json.Marshal(res)
	fmt.Fprintf(stdout, "%s\n", b)
	return 0
}

// writePNG writes img atomically (temp file + rename), so a killed handler
// never leaves a half-written tile.
func writePNG(path string, img image.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tile-*.png")
	if err != nil {
		return fmt.Errorf("create png: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("encode png: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write png: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write png: %w", err)
	}
	return nil
}

// Assemble stitches tiles 0..n-1 of a cols×rows grid in dir into one PNG
// at out (grid cells past n stay black). A missing tile is an error.
func Assemble(dir string, cols, rows, n int, out string) error {
	var full *image.RGBA
	for i := 0; i < n && i < cols*rows; i++ {
		t := Tile{Index: i, Out: dir}
		f, err := os.Open(t.Path())
		if err != nil {
			return fmt.Errorf("assemble: %w", err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("assemble: decode %s: %w", t.Path(), err)
		}
		size := img.Bounds().Dx()
		if full == nil {
			full = image.NewRGBA(image.Rect(0, 0, cols*size, rows*size))
		}
		if img.Bounds().Dx() != size || img.Bounds().Dy() != size {
			return errors.New("assemble: tiles of different sizes")
		}
		c, r := i%cols, i/cols
		draw.Draw(full, image.Rect(c*size, r*size, (c+1)*size, (r+1)*size), img, img.Bounds().Min, draw.Src)
	}
	if full == nil {
		return errors.New("assemble: no tiles")
	}
	return writePNG(out, full)
}
