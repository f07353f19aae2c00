package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
)

// hero is one hero of the API (wire-compatible with the original service).
type hero struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// heroStore keeps heroes. Implementations are safe for concurrent use.
// List returns heroes ordered by id. Get, Replace and Delete return
// errHeroNotFound for an unknown id. etag is an opaque version string of the
// stored hero; Replace and Delete with a non-empty ifMatch fail with
// errHeroConflict when the stored version differs. Any failure to reach the
// backing store wraps errStoreUnavailable (maps to 503).
type heroStore interface {
	List(ctx context.Context, offset, limit int) ([]hero, error)
	Get(ctx context.Context, id string) (h hero, etag string, err error)
	Create(ctx context.Context, h hero) (etag string, err error)
	Replace(ctx context.Context, h hero, ifMatch string) (etag string, err error)
	Delete(ctx context.Context, id string, ifMatch string) error
	Ready(ctx context.Context) error
	Close() error
}

var (
	errHeroNotFound     = errors.New("heroes: hero not found")
	errHeroConflict     = errors.New("heroes: hero was changed by someone else")
	errHeroTooLarge     = errors.New("heroes: hero is too large for the store")
	errStoreUnavailable = errors.New("heroes: store unavailable")
)

// openStore opens the store cfg.HeroesStore selects.
func openStore(ctx context.Context, cfg config, client *http.Client, logger *slog.Logger) (heroStore, error) {
	return nil, errors.New("heroes: TODO")
}

// seedHeroes adds a handful of sample heroes (for -dev).
func seedHeroes(ctx context.Context, s heroStore) error { return nil }

func handleHeroList(logger *slog.Logger, store heroStore) http.Handler { return http.NotFoundHandler() }
func handleHeroGet(logger *slog.Logger, store heroStore) http.Handler  { return http.NotFoundHandler() }
func handleHeroCreate(logger *slog.Logger, store heroStore) http.Handler {
	return http.NotFoundHandler()
}
func handleHeroReplace(logger *slog.Logger, store heroStore) http.Handler {
	return http.NotFoundHandler()
}
func handleHeroDelete(logger *slog.Logger, store heroStore) http.Handler {
	return http.NotFoundHandler()
}
func handleFireballLowAC(logger *slog.Logger, store heroStore) http.Handler {
	return http.NotFoundHandler()
}

// handleOpenAPI serves GET /openapi.json.
func handleOpenAPI(cfg config, prov *provider) http.Handler { return http.NotFoundHandler() }
