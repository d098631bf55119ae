package report_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/recovery/report"
)

// chromiumTimeout is generous: a cold Chromium on a busy two-core machine
// takes many seconds to start.
const chromiumTimeout = 60 * time.Second

// TestHTMLRendersInChromium opens the report in a real browser: string
// checks cannot tell whether the CSS and the SVG actually lay out. It
// fails, never skips, without Chromium: a skipped check would let a
// broken report pass CI unnoticed. Set DRCTL_REPORT_SCREENSHOT to a path
// to keep the screenshot for a look by eye.
func TestHTMLRendersInChromium(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("chromium is not installed: run `make deps` (scripts/install-deps.sh installs it)")
	}

	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var buf bytes.Buffer
	if err := report.Sample().WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	u := (&url.URL{Scheme: "file", Path: page}).String()

	dom := runChromium(t, bin, filepath.Join(dir, "profile-dom"), "--dump-dom", u)
	for _, re := range []string{`<table id="vms">`, `<svg id="timeline"[^>]*>`, `<tr class="vm pass" data-vm="db">`, `<tr class="vm fail" data-vm="web">`} {
		if !regexp.MustCompile(re).MatchString(dom) {
			t.Errorf("the DOM Chromium built lacks %s:\n%.2000s", re, dom)
		}
	}
	if n := strings.Count(dom, `<g class="lane"`); n != 2 {
		t.Errorf("the DOM has %d timeline lanes, want 2", n)
	}

	shot := filepath.Join(dir, "report.png")
	runChromium(t, bin, filepath.Join(dir, "profile-shot"), "--screenshot="+shot, "--window-size=1280,1600", "--hide-scrollbars", u)
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if w := img.Bounds().Dx(); w != 1280 {
		t.Fatalf("screenshot is %d wide, want 1280", w)
	}
	if n := colours(img, 11); n <= 10 {
		t.Fatalf("screenshot has %d colours: the page did not render", n)
	}
	if keep := os.Getenv("DRCTL_REPORT_SCREENSHOT"); keep != "" {
		if err := os.WriteFile(keep, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot kept at %s", keep)
	}
}

// runChromium runs a headless Chromium with its own profile, so that
// runs do not collide, and returns its standard output. --no-sandbox:
// tests run as root in CI, where Chromium refuses its sandbox.
func runChromium(t *testing.T, bin, profile string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), chromiumTimeout)
	defer cancel()
	args = append([]string{"--headless=new", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
		"--no-first-run", "--disable-dev-shm-usage", "--disable-extensions", "--disable-breakpad"}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Chromium's helpers may hold the pipes after it is killed.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v (timeout %s)\n%s", bin, strings.Join(args, " "), err, chromiumTimeout, tail(stderr.String(), 3000))
	}
	return stdout.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// colours counts the distinct colours of img, stopping at limit.
func colours(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
