package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Swagger UI at /docs, as FastAPI serves it: the pinned swagger-ui-dist
// release and the Subresource Integrity hashes (W3C SRI: SHA-384 of the npm
// package's files, which jsDelivr serves unchanged) the browser checks its
// two files against before it runs or applies them.
const (
	docsDefaultAssetsURL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
	docsBundleIntegrity  = "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9" // swagger-ui-bundle.js
	docsCSSIntegrity     = "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I" // swagger-ui.css
	// docsRedirectPath is where Swagger UI's sign-in pop-up returns: the
	// single-page-application redirect URI to register (base URL + this).
	docsRedirectPath = "/docs/oauth2-redirect"
)

// assetsBase checks an assets URL (DOCS_ASSETS_URL, without its trailing
// slash) and returns it as the /docs page loads from it and names it in its
// Content-Security-Policy: the host lower-cased, the rest as given. The URL
// must be https (http only on loopback: the files run as scripts on the
// page), with a plain host, no user, query or fragment, and a path of
// letters, digits and - . _ ~ / @ + % only, so that it adds nothing to the
// policy or the page.
func assetsBase(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || !isSecureURL(s) || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery ||
		!isHostPort(u.Host) || strings.ContainsFunc(u.EscapedPath(), isNotAssetsPathChar) {
		return "", fmt.Errorf("must be an https URL with no query (http only on localhost, 127.0.0.0/8 or ::1), e.g. %s", docsDefaultAssetsURL)
	}
	return u.Scheme + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// isNotAssetsPathChar reports whether r may not appear in the path of
// DOCS_ASSETS_URL (see assetsBase).
func isNotAssetsPathChar(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~/@+%", r))
}

// originOf is the scheme://host[:port] of an absolute http(s) URL, or ""
// when s is not one or its host is not a plain name or address (isHostPort):
// the origin goes into a Content-Security-Policy, and a token endpoint from
// the discovery document must not add directives to it.
func originOf(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !isHostPort(u.Host) {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// sha256Source is the Content-Security-Policy source allowing exactly the
// inline script text s (CSP Level 3, hash-source).
func sha256Source(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// docsPage is the /docs page of a configuration, made once at start.
type docsPage struct {
	html       []byte // the page, UTF-8
	scriptHash string // the CSP source of its inline script
	bundle     string // the URL of swagger-ui-bundle.js
	css        string // the URL of swagger-ui.css
}

// docsFallback is what #swagger-ui shows until Swagger UI replaces it: for
// a moment while the files load, and for good when they could not be loaded
// (the CDN unreachable, a file failing its SRI check) or scripts are off.
// %[1]s is the HTML-escaped URL of the OpenAPI document. It names the
// README's section on serving the files yourself.
const docsFallback = `<p>Loading Swagger UI… If this text stays, Swagger UI could not be loaded from its CDN ` +
	`(DOCS_ASSETS_URL): this browser cannot reach it, or its files did not match their integrity hashes. ` +
	`The API is described in <a href="%[1]s">%[1]s</a>; open it in any OpenAPI tool. ` +
	`To serve Swagger UI's two files from your own machine or network, see the section ` +
	`&ldquo;Serving Swagger UI&rsquo;s files yourself&rdquo; of the service&rsquo;s README.md (DOCS_ASSETS_URL).</p>`

// newDocsPage builds the page: Swagger UI from cfg.DocsAssetsURL (with SRI),
// reading base/openapi.json, signing in with cfg.OpenAPIClientID by the
// authorization code flow with PKCE (RFC 7636) as a public client, the
// pop-up returning to base + docsRedirectPath, cfg.APIScopes ticked; until
// it loads, #swagger-ui holds docsFallback.
func newDocsPage(cfg config, base string) docsPage {
	ui, _ := json.Marshal(map[string]any{ // strings and booleans: Marshal cannot fail
		"url": base + "/openapi.json", "dom_id": "#swagger-ui", "layout": "BaseLayout", "deepLinking": true,
		"showExtensions": true, "showCommonExtensions": true, "oauth2RedirectUrl": base + docsRedirectPath,
	})
	oauth, _ := json.Marshal(map[string]any{
		"clientId": cfg.OpenAPIClientID, "usePkceWithAuthorizationCodeGrant": true,
		"scopes": append([]string{}, cfg.APIScopes...), "appName": "Heroes API",
	})
	// json.Marshal writes <, > and & as \u escapes: the values cannot end
	// the script element. Without the bundle the script stops quietly and
	// the fallback text stays.
	script := "\nif (typeof SwaggerUIBundle === \"function\") {\nconst config = " + string(ui) + ";\n" +
		"config.presets = [SwaggerUIBundle.presets.apis];\nwindow.ui = SwaggerUIBundle(config);\n" +
		"window.ui.initOAuth(" + string(oauth) + ");\n}\n"
	assets := cfg.DocsAssetsURL // as assetsBase wrote it (loadConfig)
	p := docsPage{scriptHash: sha256Source(script), bundle: assets + "/swagger-ui-bundle.js", css: assets + "/swagger-ui.css"}
	p.html = []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Heroes API · Swagger UI</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="` + html.EscapeString(p.css) + `" integrity="` + docsCSSIntegrity + `" crossorigin="anonymous">
</head><body>
<div id="swagger-ui">` + fmt.Sprintf(docsFallback, html.EscapeString(base+"/openapi.json")) + `</div>
<script src="` + html.EscapeString(p.bundle) + `" charset="UTF-8" integrity="` + docsBundleIntegrity + `" crossorigin="anonymous"></script>
<script>` + script + `</script>
</body></html>
`)
	return p
}

// csp is the page's Content-Security-Policy: scripts only from the exact
// URL of swagger-ui-bundle.js plus the page's own inline script, styles
// only from the exact URL of swagger-ui.css (CSP Level 3: a source with a
// path not ending in "/" matches that path alone), images from the service
// and data: URLs (Swagger UI's icons), and fetches (the document, Try it
// out, the token request) only to the origins in connect. Nothing may frame
// the page.
func (p docsPage) csp(connect []string) string {
	return "default-src 'none'; script-src " + p.bundle + " " + p.scriptHash + "; style-src " + p.css +
		"; img-src 'self' data:; connect-src " + strings.Join(connect, " ") +
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}

// handleDocs serves GET /docs: Swagger UI for /openapi.json with Authorize
// (see newDocsPage), under its own Content-Security-Policy (docsPage.csp),
// which replaces the one securityHeaders sets. The token endpoint's origin,
// which Swagger UI posts the code to, comes from discovery (oauthEndpoints).
// No authentication; no Cross-Origin-Opener-Policy, as the sign-in pop-up
// must reach its opener.
func handleDocs(cfg config, prov *provider) http.Handler {
	base := serviceBase(cfg.RedirectURI)
	page, baseOrigin := newDocsPage(cfg, base), originOf(base)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, tokenURL := oauthEndpoints(r.Context(), cfg, prov)
		connect := []string{"'self'"}
		for _, o := range []string{baseOrigin, originOf(tokenURL)} {
			if o != "" && !slices.Contains(connect, o) {
				connect = append(connect, o)
			}
		}
		h := w.Header()
		h.Set("Content-Security-Policy", page.csp(connect))
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		w.Write(page.html)
	})
}

// docsRedirectScript is the script of the pop-up's last page: it hands the
// authorization code (RFC 6749 §4.1.2) to the Swagger UI page that opened
// the pop-up, which then redeems it with its PKCE code_verifier, or hands
// over the error (§4.1.2.1), then closes the pop-up. A code whose state is
// not the one Swagger UI sent is refused. The opener must be on the same
// origin; on another the browser forbids the hand-over and the page says
// what to do.
const docsRedirectScript = `
(function () {
  "use strict";
  var status = document.getElementById("status");
  var handoff = null;
  try { handoff = window.opener && window.opener.swaggerUIRedirectOauth2; } catch (e) { handoff = null; }
  if (!handoff) {
    status.textContent = "This page ends a sign-in started by Authorize on the API docs (/docs) of this " +
      "service, in this browser and at this same address. Close it, open /docs and press Authorize again.";
    return;
  }
  var q = new URLSearchParams(window.location.search);
  var fail = function (message) {
    handoff.errCb({authId: handoff.auth.name, source: "auth", level: "error", message: message});
  };
  if (q.get("error")) {
    fail("[" + q.get("error") + "]: " + (q.get("error_description") || "the sign-in did not finish"));
  } else if (!q.get("state") || q.get("state") !== handoff.state) {
    fail("[state mismatch]: this answer is not for the sign-in Swagger UI started; press Authorize again");
  } else if (!q.get("code")) {
    fail("[no code]: the identity provider sent no authorization code");
  } else {
    handoff.auth.code = q.get("code");
    handoff.callback({auth: handoff.auth, redirectUrl: handoff.redirectUrl});
  }
  window.close();
})();
`

// handleDocsRedirect serves GET /docs/oauth2-redirect, where the identity
// provider sends Swagger UI's sign-in pop-up back with the code and state
// (the redirect URI newDocsPage gives Swagger UI). The page is served by the
// service, never loaded from the assets URL, and runs one inline script
// (docsRedirectScript), the only thing its CSP allows. Its URL carries a
// code: Cache-Control: no-store, and no Referer (securityHeaders).
func handleDocsRedirect() http.Handler {
	csp := "default-src 'none'; script-src " + sha256Source(docsRedirectScript) +
		"; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
	page := []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Heroes API · signing in</title></head>
<body><p id="status">Returning to the API docs…</p>
<script>` + docsRedirectScript + `</script>
</body></html>
`)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		w.Write(page)
	})
}

// oauthEndpoints are the authorize and token endpoints of the identity
// provider, from the discovery document; when it cannot be read, Entra's
// v2.0 endpoints under cfg.AuthorityHost and cfg.TenantID, which is where
// discovery points for Entra.
func oauthEndpoints(ctx context.Context, cfg config, prov *provider) (authURL, tokenURL string) {
	authURL = cfg.AuthorityHost + "/" + cfg.TenantID + "/oauth2/v2.0/authorize"
	tokenURL = cfg.AuthorityHost + "/" + cfg.TenantID + "/oauth2/v2.0/token"
	if md, err := prov.metadata(ctx); err == nil && md.AuthorizationEndpoint != "" && md.TokenEndpoint != "" {
		authURL, tokenURL = md.AuthorizationEndpoint, md.TokenEndpoint
	}
	return authURL, tokenURL
}
