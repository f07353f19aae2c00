package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
)

// devIDP is the local identity provider that -dev serves under /devidp/.
type devIDP struct{}

func newDevIDP() (*devIDP, error) { return &devIDP{}, nil }

// getenv returns a getenv that answers the identity settings (client id,
// tenant, secret, authority host, API scope, redirect URI) with the dev
// provider's values for a service reached at base, and everything else from
// getenv.
func (d *devIDP) getenv(getenv func(string) string, base string) func(string) string { return getenv }

// addRoutes registers the provider's endpoints under /devidp/.
func (d *devIDP) addRoutes(mux router, logger *slog.Logger) {}

// signRS256 makes a compact JWS (RFC 7515 §7.1) of claims, signed with
// RSASSA-PKCS1-v1_5 SHA-256 (RFC 7518 §3.3) under key, with the header
// {"alg":"RS256","kid":kid,"typ":"JWT"}. The dev provider and the tests mint
// tokens with it; the service itself never trusts a token it did not verify.
func signRS256(key *rsa.PrivateKey, kid string, claims any) (string, error) {
	header := map[string]string{"alg": "RS256", "kid": kid, "typ": "JWT"}
	return signJWS(key, header, claims)
}

// signJWS signs claims under an arbitrary header (tests use it to forge
// headers). header and claims are marshalled with encoding/json.
func signJWS(key *rsa.PrivateKey, header, claims any) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// publicJWK is the JWK (RFC 7517 §4, RFC 7518 §6.3.1) of an RSA public key,
// shaped like an Entra key: kty, use, kid, n, e (base64url, no padding).
// issuer is added when non-empty, as Entra v2 keys carry it.
func publicJWK(pub *rsa.PublicKey, kid, issuer string) map[string]string {
	k := map[string]string{
		"kty": "RSA",
		"use": "sig",
		"kid": kid,
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
	if issuer != "" {
		k["issuer"] = issuer
	}
	return k
}
