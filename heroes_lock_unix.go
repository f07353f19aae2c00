//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockHeroesFile takes the file store's single-writer lock: an exclusive
// flock(2) on path+".lock", held until the returned file is closed. The
// kernel drops it when the process dies, so a crash leaves no stale lock. A
// second process (or a second store in this one) on the same file gets an
// error naming it, rather than silently overwriting the other's writes.
func lockHeroesFile(path string) (*os.File, error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("heroes: creating lock %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close() // the lock failed; nothing was written to the file
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("heroes: %s is in use by another store (lock %s held); one process owns a heroes file, use azuretable for several replicas", path, name)
		}
		return nil, fmt.Errorf("heroes: locking %s: %w", name, err)
	}
	return f, nil
}
