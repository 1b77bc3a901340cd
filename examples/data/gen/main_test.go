package main

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"testing"
)

// The committed data files must be exactly what the generator writes.
func TestCommittedFilesMatchGenerator(t *testing.T) {
	for name, want := range map[string][]byte{
		"products.csv":       productsCSV(repeats),
		"products_empty.csv": productsCSV(0),
	} {
		got, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Fatalf("%s: %v (run go generate ./examples/handlers)", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generator output; run go generate ./examples/handlers", name)
		}
	}
}

func TestProductsShape(t *testing.T) {
	if len(catalog) != 100 {
		t.Fatalf("catalog has %d products, want 100", len(catalog))
	}
	records, err := csv.NewReader(bytes.NewReader(productsCSV(repeats))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 1001 {
		t.Fatalf("%d records, want header + 1000", len(records))
	}
	for i, rec := range records[1:] {
		if want := catalog[i%100].SKU; rec[9] != want {
			t.Fatalf("row %d sku %q, want %q", i+1, rec[9], want)
		}
	}
}
