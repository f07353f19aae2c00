package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// benchStoreBytes is the size of the heroes file the file store benchmarks
// work on: 32 MiB, large enough to show how memory and time grow with the
// file, small enough for CI.
const benchStoreBytes = 32 << 20

// writeBenchFile writes a heroes file of about size bytes at path, of
// heroes of about 4 KiB (a hero with a long list of items), and returns
// its size.
func writeBenchFile(tb testing.TB, path string, size int64) int64 {
	tb.Helper()
	set := newHeroSet()
	items := make([]string, 150)
	for i := range items {
		items[i] = fmt.Sprintf("Item of adventuring gear %03d", i)
	}
	for i := 0; set.heroBytes < size; i++ {
		h := testHero(newHeroID(), fmt.Sprintf("Hero %d", i))
		h.Equipment.Items = items
		data, err := encodeHero(h)
		if err != nil {
			tb.Fatal(err)
		}
		set.put(storedHero{ID: h.ID, ETag: newETag(), Hero: data})
	}
	doc := heroesFile{Version: 1, Heroes: set.recordsWith("", nil)}
	if err := writeHeroesFile(path, doc, maxHeroesFile, (*os.File).Sync); err != nil {
		tb.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

// heapAfterGC is the live heap once garbage is collected, in bytes.
func heapAfterGC() (heap, totalAlloc uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.TotalAlloc
}

// BenchmarkFileStoreOpen measures the start of a file store of 32 MiB:
// alloc/file is the bytes allocated while reading it per byte of file (an
// upper bound of what the read adds to the heap at its peak), live/file the
// heap the open store keeps per byte of file.
func BenchmarkFileStoreOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "heroes.json")
	size := writeBenchFile(b, path, benchStoreBytes)
	b.SetBytes(size)
	var alloc, live float64
	for b.Loop() {
		heap0, total0 := heapAfterGC()
		s, err := openFileStore(path, maxHeroesFile)
		if err != nil {
			b.Fatal(err)
		}
		heap1, total1 := heapAfterGC()
		alloc += float64(total1 - total0)
		live += float64(heap1) - float64(heap0)
		s.Close()
	}
	b.ReportMetric(alloc/float64(b.N)/float64(size), "alloc/file")
	b.ReportMetric(live/float64(b.N)/float64(size), "live/file")
}

// BenchmarkFileStoreCreate measures one create in a file store of 32 MiB,
// which rewrites the whole file: alloc/file is the bytes it allocates per
// byte of file.
func BenchmarkFileStoreCreate(b *testing.B) {
	path := filepath.Join(b.TempDir(), "heroes.json")
	size := writeBenchFile(b, path, benchStoreBytes)
	s, err := openFileStore(path, maxHeroesFile)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.fsync = func(*os.File) error { return nil } // the disk's flush is not what is measured
	b.SetBytes(size)
	_, total0 := heapAfterGC()
	for b.Loop() {
		if _, err := s.Create(b.Context(), testHero(newHeroID(), strings.Repeat("N", 10))); err != nil {
			b.Fatal(err)
		}
	}
	_, total1 := heapAfterGC()
	b.ReportMetric(float64(total1-total0)/float64(b.N)/float64(size), "alloc/file")
}
