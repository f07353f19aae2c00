package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
)

// openTableStore opens the Azure Table Storage store (HEROES_STORE=azuretable).
func openTableStore(ctx context.Context, cfg config, client *http.Client, logger *slog.Logger) (heroStore, error) {
	return nil, errors.New("table: not implemented")
}
