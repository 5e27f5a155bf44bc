package view

import (
	"embed"
	"errors"
	"io/fs"
	"net/http"

	"syndic/shared/httpx"
)

//go:embed static templates
var shared embed.FS

// Static is the route /static/: the files of assets' static folder, with
// the stylesheet the services share, base.css, beside them.
func Static(assets fs.FS) httpx.Route {
	own, _ := fs.Sub(assets, "static")
	base, _ := fs.Sub(shared, "static")
	return httpx.On("GET /static/", "open", http.StripPrefix("/static/", httpx.Static(overlay{own, base})))
}

// overlay opens a file from the first file system that has it.
type overlay []fs.FS

func (o overlay) Open(name string) (fs.File, error) {
	for _, fsys := range o {
		f, err := fsys.Open(name)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}
