package main

import (
	"bytes"
	"cmp"
	"context"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// handleIndex serves GET /: a plain HTML page (no external assets) with a
// sign-in link and links to the API and its OpenAPI document.
func handleIndex(dev bool, scopes []string) http.Handler {
	data := map[string]any{"Dev": dev, "Scopes": scopes}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The index takes no data that can fail its template: no error to log.
		renderPage(w, pages, http.StatusOK, "index", data)
	})
}

// prefersHTML reports whether an Accept header (RFC 9110 §12.5.1) ranks
// text/html above application/json, each taking the q of its most specific
// matching range. A tie (such as curl's */*) means JSON, the API's default.
// Only the first maxAcceptLen bytes are read.
func prefersHTML(accept string) bool {
	if len(accept) > maxAcceptLen {
		accept = accept[:maxAcceptLen]
	}
	htmlQ, jsonQ := 0.0, 0.0
	htmlSpec, jsonSpec := -1, -1
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || !(f >= 0 && f <= 1) {
				continue
			}
			q = f
		}
		if s := rangeSpecificity(mt, "text/html"); s > htmlSpec {
			htmlSpec, htmlQ = s, q
		}
		if s := rangeSpecificity(mt, "application/json"); s > jsonSpec {
			jsonSpec, jsonQ = s, q
		}
	}
	return htmlQ > jsonQ
}

// rangeSpecificity is how specifically the media range rng matches the media
// type want: 2 exactly, 1 as type/*, 0 as */*, -1 not at all.
func rangeSpecificity(rng, want string) int {
	switch {
	case rng == want:
		return 2
	case rng == "*/*":
		return 0
	case strings.HasSuffix(rng, "/*") && strings.HasPrefix(want, strings.TrimSuffix(rng, "*")):
		return 1
	}
	return -1
}

// apiPreview is what the signed-in page shows of the API for a new access
// token.
type apiPreview struct {
	// Items are a few of the API's items as the token would list them.
	Items []string
	// Note says why there are no items to show, or is "".
	Note string
	// Permissions are the API's permissions the token carries, each with
	// what it allows; an empty list says that it carries none.
	Permissions []permissionNote
}

// permissionNote is one permission of a token and what it allows.
type permissionNote struct {
	Name, Allows string
}

// signedInPreview gives the signed-in page's apiPreview for a new access
// token. handleCallback takes one from the program that serves the API;
// nil shows nothing of it.
type signedInPreview func(ctx context.Context, accessToken *claims) apiPreview

// renderSignedIn answers the callback with the signed-in HTML page. When
// loginOptions.StepUpAuthContext is set and the access token's claims (atc)
// lack it in acrs, the page offers to sign in again asking for it.
func (af *authFlow) renderSignedIn(w http.ResponseWriter, ans tokenAnswer, idc, atc *claims, preview *apiPreview) {
	// The API lives next to the callback (serviceBase).
	base := cmp.Or(serviceBase(af.opts.RedirectURI), "http://localhost:8000")
	var stepUp string
	if id := af.opts.StepUpAuthContext; id != "" && !slices.Contains(atc.AuthContexts, id) {
		stepUp = "/auth/login?claims=" + url.QueryEscape(authContextClaims(id))
	}
	af.render(w, http.StatusOK, "signedin", map[string]any{
		"Name":         idc.Name,
		"Username":     idc.PreferredUsername,
		"TenantID":     idc.TenantID,
		"Scopes":       strings.Fields(ans.Scope),
		"ExpiresIn":    ans.ExpiresIn,
		"ExpiresAt":    af.now().Add(time.Duration(ans.ExpiresIn) * time.Second).UTC().Format(time.RFC1123),
		"Token":        ans.AccessToken,
		"Curl":         "curl -H 'Authorization: Bearer " + ans.AccessToken + "' " + base + "/api/heroes/",
		"RefreshToken": ans.RefreshToken,
		"RefreshCurl":  "curl -X POST --data-urlencode 'refresh_token=" + ans.RefreshToken + "' " + base + "/auth/refresh",
		"ReturnTo":     ans.ReturnTo,
		"Preview":      preview,
		"StepUp":       stepUp,
		"AuthContext":  af.opts.StepUpAuthContext,
	})
}

// render writes page name of pages with status, logging template errors.
func (af *authFlow) render(w http.ResponseWriter, status int, name string, data any) {
	if err := renderPage(w, pages, status, name, data); err != nil {
		af.logger.Error("auth: rendering page", "page", name, "err", err)
	}
}

// renderPage executes the template name of set into a buffer, then writes it
// as text/html with status, so a template error, which it returns for the
// caller to log, can still become a clean 500 JSON error instead of half a
// page.
func renderPage(w http.ResponseWriter, set *template.Template, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := set.ExecuteTemplate(&buf, name, data); err != nil {
		writeError(w, http.StatusInternalServerError, "internal error")
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
	return nil
}

// pages are the HTML pages of the client half: index, signedin and error.
// html/template escapes every value by context. Parsed once; read-only
// afterwards, and so safe for concurrent use.
var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · heroes-auth</title>
<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
pre{background:#f4f4f4;padding:.75rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}</style>
</head><body>{{end}}

{{define "index"}}{{template "head" "Heroes API"}}
<h1>Heroes API</h1>
<p>A small REST API protected by Microsoft Entra ID with the OAuth 2.0 authorization code flow.</p>
{{if .Dev}}<p><strong>Development mode:</strong> sign-in goes to the local identity provider; it is not for production.</p>{{end}}
<ul>
<li><a href="/auth/login">Sign in</a> (or <a href="/auth/login?prompt=select_account">pick another account</a>) to get an access token</li>
<li><a href="/docs">/docs</a>: try the API in the browser: press <strong>Authorize</strong>, sign in, then <strong>Try it out</strong></li>
<li><a href="/openapi.json">/openapi.json</a>: the API's description</li>
<li><a href="/auth/logout">Sign out</a></li>
</ul>
<p>The API is under <code>/api/heroes/</code>; every call needs <code>Authorization: Bearer &lt;access token&gt;</code>,
so a plain link to it can only answer 401.</p>
{{with .Scopes}}<p>Scopes asked for: {{range .}}<code>{{.}}</code> {{end}}</p>{{end}}
</body></html>{{end}}

{{define "signedin"}}{{template "head" "Signed in"}}
<h1>Signed in</h1>
<p>Signed in as <strong>{{or .Name "(no name)"}}</strong>{{with .Username}} ({{.}}){{end}}{{with .TenantID}} in tenant <code>{{.}}</code>{{end}}.</p>
<p>Granted scopes: {{range .Scopes}}<code>{{.}}</code> {{else}}none{{end}}</p>
<p>The access token expires in {{.ExpiresIn}} seconds, at {{.ExpiresAt}}.</p>
{{with .Preview}}{{if .Permissions}}<p>What this token allows:</p>
<ul>{{range .Permissions}}<li><code>{{.Name}}</code>: {{.Allows}}</li>{{end}}</ul>
{{else}}<p>This token carries none of the API's permissions: every call to it will answer 403.</p>{{end}}{{end}}
{{with .StepUp}}<p>Some operations also need the Conditional Access authentication context <code>{{$.AuthContext}}</code> (a second step
at sign-in), which this token does not carry: <a href="{{.}}">sign in again with {{$.AuthContext}}</a>.</p>{{end}}
<p>Try the API in the browser: open <a href="/docs">/docs</a>, press <strong>Authorize</strong>, and paste the access token
below under <code>bearerAuth</code> (or sign in there under <code>oauth2</code>), then <strong>Try it out</strong>. Or call it:</p>
<pre>{{.Curl}}</pre>
{{with .Preview}}{{if or .Items .Note}}<p>What <code>GET /api/heroes/</code> answers with this token, first ten:</p>
{{with .Items}}<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}{{with .Note}}<p>{{.}}</p>{{end}}{{end}}{{end}}
<details><summary>Access token</summary><pre>{{.Token}}</pre></details>
{{with .RefreshToken}}<p>A refresh token was issued: POST it to <code>/auth/refresh</code> for a new access token when this one expires:</p>
<pre>{{$.RefreshCurl}}</pre>
<details><summary>Refresh token</summary><pre>{{.}}</pre></details>{{end}}
<p>Keep these tokens private; this page is not stored by the browser cache.</p>
{{with .ReturnTo}}<p><a href="{{.}}">Continue to {{.}}</a></p>{{end}}
<p><a href="/">Home</a> · <a href="/auth/logout">Sign out</a></p>
</body></html>{{end}}

{{define "error"}}{{template "head" "Sign-in failed"}}
<h1>{{.Status}} {{.StatusText}}</h1>
<p>{{.Detail}}</p>
{{with .Error}}<p>Error: <code>{{.}}</code>{{with $.Code}} (<code>{{.}}</code>){{end}}</p>{{end}}
<p><a href="/auth/login">Sign in again</a> · <a href="/">Home</a></p>
</body></html>{{end}}
`))
