package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestMountServesEmbeddedAssets(t *testing.T) {
	apiCalled := false
	mux := http.NewServeMux()
	Routes(func(m *http.ServeMux) {
		m.HandleFunc("GET /v1/tasks", func(http.ResponseWriter, *http.Request) { apiCalled = true })
	})(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, c := range []struct{ path, ctype, contains string }{
		{"/console/", "text/html", `<script src="app.js"`},
		{"/console/app.js", "text/javascript", "function layoutDAG"},
		{"/console/style.css", "text/css", "#dag"},
	} {
		resp, err := client.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: %d %q, body without %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contains)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", c.path, csp)
		}
	}
	resp, err := client.Get(srv.URL + "/console")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != Path {
		t.Errorf("/console: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, err = client.Get(srv.URL + "/v1/tasks"); err != nil || resp.StatusCode != 200 || !apiCalled {
		t.Errorf("the routes passed to Routes were not registered: %v", err)
	}
}

// TestAssetsFetchNothingElsewhere: the console loads nothing but its own files and the API.
func TestAssetsFetchNothingElsewhere(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := assets.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range external.FindAllString(string(data), -1) {
			if m != "http://www.w3.org" { // the SVG namespace name, never fetched
				t.Errorf("%s refers to %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
