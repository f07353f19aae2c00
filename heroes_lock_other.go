//go:build !unix

package main

import "os"

// lockHeroesFile is a no-op where flock(2) is not available: the file store
// relies on the operator running one process per heroes file.
func lockHeroesFile(path string) (*os.File, error) { return nil, nil }
