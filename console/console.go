// Package console serves the orchestrator's web console: a few static pages (HTML, CSS and a
// small script, embedded in the binary) under /console/ that call the /v1 API from the browser.
// The console holds no state and reads nothing at runtime but the API of the server it is
// served by, so the API's authentication applies to it unchanged.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

// Path is where Mount serves the console.
const Path = "/console/"

//go:embed assets
var assets embed.FS

// Mount registers the console on mux under Path (and redirects /console to it).
func Mount(mux *http.ServeMux) {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	files := http.StripPrefix(Path, http.FileServerFS(sub))
	mux.Handle("GET "+Path, securityHeaders(files))
	mux.Handle("GET /console", http.RedirectHandler(Path, http.StatusMovedPermanently))
}

// securityHeaders keeps the console from loading anything but its own files and the API, and
// from being framed.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// Routes returns a web.Config.Routes hook that registers routes (the /v1 API) and then the
// console.
func Routes(routes func(*http.ServeMux)) func(*http.ServeMux) {
	return func(mux *http.ServeMux) {
		if routes != nil {
			routes(mux)
		}
		Mount(mux)
	}
}
