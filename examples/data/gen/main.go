// Command gen writes the sample data files of the CSV batch scenario: products.csv (a header
// and 1000 data rows, the 100 catalog products repeated 10 times, as in tasker-core's fixture)
// and products_empty.csv (the header only). Output is deterministic; run it with
// `go generate ./examples/handlers` (or `go run ./examples/data/gen -dir examples/data`).
package main

import (
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
)

// repeats is how many times the catalog is written: 100 products × 10 = 1000 rows.
const repeats = 10

// header is the column order of tasker-core's products.csv.
var header = []string{"id", "title", "description", "category", "price", "discountPercentage", "rating", "stock", "brand", "sku", "weight"}

func main() {
	dir := flag.String("dir", ".", "directory to write products.csv and products_empty.csv to")
	flag.Parse()
	files := map[string][]byte{
		"products.csv":       productsCSV(repeats),
		"products_empty.csv": productsCSV(0),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(*dir, name), data, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// productsCSV renders the header and n copies of the catalog.
func productsCSV(n int) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(header)
	for range n {
		for _, p := range catalog {
			_ = w.Write([]string{
				strconv.Itoa(p.ID),
				p.Title,
				description(p),
				p.Category,
				formatFloat(p.Price),
				formatFloat(p.Discount),
				formatFloat(p.Rating),
				strconv.Itoa(p.Stock),
				p.Brand,
				p.SKU,
				strconv.Itoa(p.Weight),
			})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		panic(err) // writing to a bytes.Buffer cannot fail
	}
	return buf.Bytes()
}

// description is a short generated text; no handler reads it.
func description(p product) string {
	return fmt.Sprintf("Sample %s item %d: %s", p.Category, p.ID, p.Title)
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
