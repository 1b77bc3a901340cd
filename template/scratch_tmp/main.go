package main

import (
	"fmt"
	"os"

	"github.com/tasker-go/tasker/template"
)

func main() {
	strict := len(os.Args) > 2
	var opts []template.Option
	if !strict {
		opts = append(opts, template.AllowUnknownFields())
	}
	ts, err := template.LoadDir(os.Args[1], opts...)
	fmt.Println("loaded", len(ts))
	if err != nil {
		fmt.Println(err)
	}
}
