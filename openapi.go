package main

import (
	"maps"
	"net/http"
	"strings"
)

// The OpenAPI document (OpenAPI 3.1.0, whose schemas are JSON Schema 2020-12)
// is built from plain Go maps rather than an embedded file, so the scopes and
// the identity provider's URLs come from the running configuration.

// obj is a JSON object of the OpenAPI document.
type obj = map[string]any

// apiScopes are the full scope strings of the three permissions: the App ID
// URI of the configured API_SCOPE (the part before the last "/",
// "api://<client-id>" in the usual registration) joined with Heroes.Read,
// Heroes.Create and Admin. With no URI in API_SCOPE they are the bare names.
func apiScopes(cfg config) (read, create, admin string) {
	prefix := ""
	for _, s := range cfg.APIScopes {
		scheme := strings.Index(s, "://")
		if i := strings.LastIndex(s, "/"); scheme >= 0 && i > scheme+2 {
			prefix = s[:i+1]
			break
		}
	}
	return prefix + permRead, prefix + permCreate, prefix + permAdmin
}

// handleOpenAPI serves GET /openapi.json: the OpenAPI 3.1 document of every
// route, the hero schema, the error shapes and an oauth2 authorizationCode
// security scheme, so Postman or Swagger UI users can sign in. Its one
// server is the service's base URL (serviceBase of REDIRECT_URI), so a
// Swagger UI served elsewhere calls the service. The authorize and token
// URLs come from the discovery document (oauthEndpoints, which falls back
// to Entra's v2.0 endpoints), so the document is always complete. No
// authentication; it holds no secret.
func handleOpenAPI(cfg config, prov *provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authURL, tokenURL := oauthEndpoints(r.Context(), cfg, prov)
		w.Header().Set("Cache-Control", "no-cache")
		writeJSON(w, http.StatusOK, openAPIDocument(cfg, authURL, tokenURL))
	})
}

// openAPIDocument builds the document for the given authorize and token URLs.
func openAPIDocument(cfg config, authURL, tokenURL string) obj {
	read, create, admin := apiScopes(cfg)
	return obj{
		"openapi": "3.1.0",
		"servers": []obj{{"url": serviceBase(cfg.RedirectURI), "description": "This service, as REDIRECT_URI names it"}},
		"info": obj{
			"title":   "Heroes API",
			"version": "1.0.0",
			"description": "A heroes REST API protected by Microsoft Entra ID. Sign in with the oauth2 " +
				"authorization code flow (use PKCE) or send an access token as a bearer token. " +
				"Permissions nest: Admin includes Heroes.Create, which includes Heroes.Read; a " +
				"permission arrives as a delegated scope (scp) or an application role (roles).",
		},
		"paths": openAPIPaths(read, create, admin),
		"components": obj{
			"securitySchemes": obj{
				"oauth2": obj{
					"type":        "oauth2",
					"description": "Microsoft Entra ID (OAuth 2.0 authorization code flow, RFC 6749 §4.1, with PKCE, RFC 7636).",
					"flows": obj{"authorizationCode": obj{
						"authorizationUrl": authURL,
						"tokenUrl":         tokenURL,
						"scopes": obj{
							read:   "Read heroes",
							create: "Create and replace heroes (includes Heroes.Read)",
							admin:  "Delete heroes (includes Heroes.Create)",
						},
					}},
				},
				"bearerAuth": obj{
					"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
					"description": "An Entra access token for this API (RFC 6750).",
				},
			},
			"schemas":    openAPISchemas(),
			"parameters": obj{"HeroID": obj{"name": "id", "in": "path", "required": true, "schema": obj{"type": "string", "format": "uuid"}}},
		},
	}
}

// openAPIPaths describes every route addRoutes registers; TestOpenAPICoversRoutes
// holds the two in step.
func openAPIPaths(read, create, admin string) obj {
	paths := openAPIServicePaths()
	maps.Copy(paths, openAPIHeroPaths(read, create, admin))
	paths["/api/me"] = openAPIMePath(read)
	return paths
}

// openAPIServicePaths are the routes without a bearer token: the pages,
// health, this document and the sign-in flow.
func openAPIServicePaths() obj {
	return obj{
		"/": obj{"get": obj{"summary": "Home page with a sign-in link", "operationId": "index", "tags": []string{"service"},
			"responses": obj{"200": obj{"description": "HTML page", "content": obj{"text/html": obj{"schema": obj{"type": "string"}}}}}}},
		"/healthz": obj{"get": obj{"summary": "Liveness", "operationId": "healthz", "tags": []string{"service"},
			"responses": obj{"200": jsonResponse("The process is alive", obj{"type": "object"})}}},
		"/readyz": obj{"get": obj{"summary": "Readiness: signing keys loaded and store reachable", "operationId": "readyz", "tags": []string{"service"},
			"responses": obj{"200": jsonResponse("Ready", obj{"type": "object"}), "503": withRetryAfter(jsonResponse("Not ready: names the check that failed", obj{"type": "object"}))}}},
		"/openapi.json": obj{"get": obj{"summary": "This document", "operationId": "openapi", "tags": []string{"service"},
			"responses": obj{"200": jsonResponse("OpenAPI 3.1 document", obj{"type": "object"})}}},
		"/docs": obj{"get": obj{"summary": "Swagger UI for this document, with Authorize", "operationId": "docs", "tags": []string{"service"},
			"responses": obj{"200": obj{"description": "HTML page", "content": obj{"text/html": obj{"schema": obj{"type": "string"}}}}}}},
		"/docs/oauth2-redirect": obj{"get": obj{"summary": "Where Swagger UI's sign-in pop-up returns (the SPA redirect URI)", "operationId": "docsRedirect", "tags": []string{"service"},
			"responses": obj{"200": obj{"description": "HTML page handing the code to /docs", "content": obj{"text/html": obj{"schema": obj{"type": "string"}}}}}}},
		"/auth/login": obj{"get": obj{"summary": "Start the sign-in (redirects to Entra ID)", "operationId": "login", "tags": []string{"auth"},
			"responses": obj{"302": obj{"description": "Redirect to the authorization endpoint"}}}},
		"/auth/callback": obj{"get": obj{"summary": "Sign-in callback (redirect_uri)", "operationId": "callback", "tags": []string{"auth"},
			"responses": obj{"200": obj{"description": "Signed in"}, "302": obj{"description": "Signed in, redirected"}, "400": errorResponse("Bad or stale callback")}}},
		"/auth/refresh": obj{"post": obj{"summary": "Refresh the access token", "operationId": "refresh", "tags": []string{"auth"},
			"responses": obj{"200": jsonResponse("New tokens", obj{"type": "object"}), "401": errorResponse("Not signed in or refresh refused")}}},
		"/auth/logout": obj{"get": obj{"summary": "Sign out", "operationId": "logout", "tags": []string{"auth"},
			"responses": obj{"302": obj{"description": "Redirect after sign-out"}}}},
	}
}

// heroesNoSlashNote is the description of /api/heroes/, the canonical path
// of the list and the create (the original service's): addRoutes serves
// /api/heroes, without the slash, with the same handlers (no redirect),
// which the document lists only here, so that a generated client has one
// operation of each.
const heroesNoSlashNote = "Also served at /api/heroes (without the trailing slash): the same operations, permissions and answers; no redirect."

// openAPIHeroPaths are the heroes API's routes, each with the scope it
// needs.
func openAPIHeroPaths(read, create, admin string) obj {
	list := func() obj {
		return obj{
			"summary": "List heroes", "operationId": "listHeroes", "tags": []string{"heroes"},
			"security": secured(read),
			"parameters": []obj{
				{"name": "limit", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": maxLimit, "default": defaultLimit}},
				{"name": "offset", "in": "query", "schema": obj{"type": "integer", "minimum": 0, "maximum": maxIntValue, "default": 0}},
			},
			"responses": heroResponses(obj{"200": jsonResponse("Heroes ordered by id", obj{"type": "array", "items": ref("Hero")})}, "422"),
		}
	}
	post := func() obj {
		return obj{
			"summary": "Create a hero", "operationId": "createHero", "tags": []string{"heroes"},
			"security":    secured(create),
			"parameters":  []obj{idempotencyKeyParam()},
			"requestBody": heroBody("Elminster"),
			"responses": heroResponses(obj{"201": withETag(jsonResponse("The created hero; Location names it", ref("Hero")), obj{
				"Location":            obj{"description": "/api/heroes/{id} of the new hero", "schema": obj{"type": "string"}},
				"Idempotent-Replayed": obj{"description": "true when this is the first answer again, for a repeated Idempotency-Key", "schema": obj{"type": "string"}},
			})}, "400", "413", "415", "422", "507"),
		}
	}
	return obj{
		"/api/heroes/": obj{"description": heroesNoSlashNote, "get": list(), "post": post()},
		"/api/heroes/{id}": obj{
			"parameters": []obj{ref("HeroID", "parameters")},
			"get": obj{"summary": "Get a hero", "operationId": "getHero", "tags": []string{"heroes"}, "security": secured(read),
				"responses": heroResponses(obj{"200": withETag(jsonResponse("The hero", ref("Hero")), nil)}, "404")},
			"put": obj{"summary": "Replace a hero", "operationId": "replaceHero", "tags": []string{"heroes"}, "security": secured(create),
				"parameters":  []obj{ifMatchParam()},
				"requestBody": heroBody("Elminster the Sage"),
				"responses":   heroResponses(obj{"200": withETag(jsonResponse("The replaced hero", ref("Hero")), nil)}, "400", "404", "409", "413", "415", "422", "507")},
			"delete": obj{"summary": "Delete a hero", "operationId": "deleteHero", "tags": []string{"heroes"}, "security": secured(admin),
				"description": stepUpNote,
				"parameters":  []obj{ifMatchParam()},
				"responses":   withStepUp(heroResponses(obj{"200": jsonResponse("Deleted", ref("Message"))}, "400", "404", "409"))},
		},
		"/api/heroes-fireball-low-ac": obj{"get": obj{
			"summary":     "Heroes who know Fireball and have armor class below 20",
			"operationId": "fireballLowAC", "tags": []string{"heroes"}, "security": secured(read),
			"responses": heroResponses(obj{"200": jsonResponse("Matching heroes ordered by id", obj{"type": "array", "items": ref("Hero")})}),
		}},
	}
}

// openAPIMePath is GET /api/me: the caller's Microsoft Graph profile, read
// through the on-behalf-of grant (graph.go).
func openAPIMePath(read string) obj {
	str := obj{"type": []string{"string", "null"}}
	user := obj{"type": "object", "required": []string{"id"}, "properties": obj{
		"id": obj{"type": "string"}, "displayName": str, "mail": str, "userPrincipalName": str}}
	return obj{"get": obj{
		"summary": "The caller's Microsoft Graph profile, read on their behalf (on-behalf-of grant)", "operationId": "me",
		"tags": []string{"me"}, "security": secured(read),
		"responses": obj{
			"200": jsonResponse("The user's id, displayName, mail and userPrincipalName, as Microsoft Graph has them", user),
			"400": errorResponse("Malformed Authorization header"),
			"401": errorResponse(`Missing or invalid bearer token, or a claims challenge (error="insufficient_claims", claims=…): sign in again with those claims`),
			"403": errorResponse("The token lacks the permission, is app-only or a refused guest's; consent for Microsoft Graph is missing; or Graph refused"),
			"502": errorResponse("The identity provider or Microsoft Graph failed"),
			"503": withRetryAfter(errorResponse("The identity provider or Microsoft Graph is unavailable or busy")),
			"504": errorResponse("The identity provider or Microsoft Graph did not answer in time"),
		},
	}}
}

// stepUpNote is the description of DELETE, the operation that needs Admin:
// how a caller of /docs gets past a step-up claims challenge, which Swagger
// UI's Authorize cannot answer.
const stepUpNote = "With STEP_UP_AUTH_CONTEXT set (c1 under -dev) the token must also carry that authentication context " +
	"in acrs, else 401 insufficient_claims. To get such a token, open /auth/login?claims=<the claims value of the 401's " +
	"WWW-Authenticate> (or the signed-in page's \"sign in again with c1\" link), sign in with the second step, then in " +
	"Authorize log out of oauth2 and paste the new access token under bearerAuth."

// withStepUp describes the 401 of an operation that needs Admin, which
// with STEP_UP_AUTH_CONTEXT may be a claims challenge (policy.go).
func withStepUp(responses obj) obj {
	responses["401"] = errorResponse(`Missing or invalid bearer token; or, with STEP_UP_AUTH_CONTEXT set, a claims challenge ` +
		`(error="insufficient_claims", claims=…) for a token whose acrs lacks that authentication context: sign in again with those claims`)
	return responses
}

// secured is an operation's security: the oauth2 scope, or a bearer token.
func secured(scope string) []obj {
	return []obj{{"oauth2": []string{scope}}, {"bearerAuth": []string{}}}
}

// ref points at a component (a schema unless kind says otherwise).
func ref(name string, kind ...string) obj {
	k := "schemas"
	if len(kind) > 0 {
		k = kind[0]
	}
	return obj{"$ref": "#/components/" + k + "/" + name}
}

// jsonResponse is a response with a JSON body of schema.
func jsonResponse(desc string, schema obj) obj {
	return obj{"description": desc, "content": obj{"application/json": obj{"schema": schema}}}
}

// errorResponse is a response with a {"detail": "…"} body.
func errorResponse(desc string) obj { return jsonResponse(desc, ref("HTTPError")) }

// withETag adds the ETag header, and any other headers, to a response.
func withETag(resp, headers obj) obj {
	h := obj{"ETag": obj{"description": "Version of the hero; send it in If-Match to change it safely (RFC 9110 §8.8.3)", "schema": obj{"type": "string"}}}
	maps.Copy(h, headers)
	resp["headers"] = h
	return resp
}

// idempotencyKeyParam is the optional Idempotency-Key header of POST.
func idempotencyKeyParam() obj {
	return obj{"name": "Idempotency-Key", "in": "header", "required": false, "schema": obj{"type": "string", "minLength": 1, "maxLength": maxIdempotencyKeyLen},
		"description": "A key of your choosing for this create, as a String (\"…\") or bare (IETF draft-ietf-httpapi-idempotency-key-header). The same key with the same hero within 24 hours gets the first answer again (Idempotent-Replayed: true) and creates nothing; with another hero it is 422. Keys are per caller. Malformed: 400."}
}

// ifMatchParam is the optional If-Match header of PUT and DELETE.
func ifMatchParam() obj {
	return obj{"name": "If-Match", "in": "header", "required": false, "schema": obj{"type": "string"},
		"description": "* or a comma-separated list of the hero's ETags, exactly as the ETag header gave them (RFC 9110 §13.1.1); several If-Match lines count as one list. The change goes through when * is given or any listed tag is the current ETag (strong comparison: a weak W/\"…\" tag never matches), else 409; a malformed If-Match is 400."}
}

// heroBody is the request body of POST and PUT, with an example that the
// service accepts as it stands (TestOpenAPIExamplesAccepted sends it), so
// Swagger UI's Try it out starts from a valid hero rather than one it
// builds from the schema, which would hold both class_ and class.
func heroBody(name string) obj {
	return obj{"required": true, "content": obj{"application/json": obj{"schema": ref("HeroInput"), "example": heroExample(name)}}}
}

// heroExample is a valid hero named name, giving class_ (not its alias).
func heroExample(name string) obj {
	return obj{
		"name": name, "race": "Elf", "class_": "Wizard", "level": 5,
		"background": "Sage", "alignment": "Neutral Good",
		"ability_scores": obj{"strength": 8, "dexterity": 14, "constitution": 12,
			"intelligence": 18, "wisdom": 13, "charisma": 10},
		"skill_proficiencies": obj{"arcana": true, "history": true},
		"equipment":           obj{"weapon": "Quarterstaff", "armor": nil, "items": []string{"Spellbook"}},
		"spells": []obj{{"name": "Fireball", "level": 3, "casting_time": "1 action", "range": "150 feet",
			"components": []string{"V", "S", "M"}, "duration": "Instantaneous"}},
		"hit_points": 27, "armor_class": 12, "speed": 30,
	}
}

// heroResponses adds to ok the error answers every protected hero route can
// give, and the listed extra statuses. Every route can answer: 400 for a
// malformed Authorization header (RFC 6750 §3.1 invalid_request), 401, 403
// (requireAuth); 502 when the store gives an answer that makes no sense;
// 503 with Retry-After when the store or the identity provider's keys are
// unavailable. The extras are 400 (also for a malformed If-Match), 404, 409,
// 413, 415 and 422 (the validation shape; for a list, bad limit or offset).
func heroResponses(ok obj, extra ...string) obj {
	desc := map[string]string{
		"400": "Malformed If-Match or Authorization header",
		"404": "Hero not found",
		"409": "If-Match does not match the hero's current ETag",
		"413": "Body larger than 1 MiB",
		"415": "Content-Type is not application/json",
		"507": "The hero store is full (HEROES_MAX_BYTES); nothing was changed",
	}
	ok["400"] = errorResponse("Malformed Authorization header")
	ok["401"] = errorResponse("Missing or invalid bearer token (WWW-Authenticate names the check)")
	ok["403"] = errorResponse("The token lacks the permission")
	ok["502"] = errorResponse("The hero store gave an unexpected answer")
	ok["503"] = withRetryAfter(errorResponse("Store or identity provider unavailable; retry after Retry-After seconds"))
	for _, s := range extra {
		if s == "422" {
			ok[s] = jsonResponse("Validation problems, every one listed (FastAPI's shape)", ref("HTTPValidationError"))
			continue
		}
		ok[s] = errorResponse(desc[s])
	}
	return ok
}

// withRetryAfter adds the Retry-After header (RFC 9110 §10.2.3, delay in
// seconds) to a 503 response.
func withRetryAfter(resp obj) obj {
	resp["headers"] = obj{"Retry-After": obj{"description": "Seconds to wait before retrying (RFC 9110 §10.2.3)", "schema": obj{"type": "integer", "minimum": 0}}}
	return resp
}

// Schema parts of the hero model, bounded as decodeHero bounds them
// (maxStringRunes, maxListItems, maxIntValue). Functions, so that no part of
// one document is shared with another.
func strSchema() obj          { return obj{"type": "string", "maxLength": maxStringRunes} }
func optStrSchema() obj       { return obj{"type": []string{"string", "null"}, "maxLength": maxStringRunes} }
func intRange(lo, hi int) obj { return obj{"type": "integer", "minimum": lo, "maximum": hi} }

// heroProperties are the properties of Hero, or with input those of
// HeroInput (which adds the class alias and says what the id does).
func heroProperties(input bool) obj {
	p := obj{
		"id":                  obj{"type": "string", "format": "uuid", "readOnly": true},
		"name":                strSchema(),
		"race":                strSchema(),
		"class_":              strSchema(),
		"level":               intRange(1, 20),
		"background":          optStrSchema(),
		"alignment":           optStrSchema(),
		"ability_scores":      ref("AbilityScores"),
		"skill_proficiencies": ref("SkillProficiencies"),
		"equipment":           ref("Equipment"),
		"spells":              obj{"type": []string{"array", "null"}, "items": ref("Spell"), "maxItems": maxListItems},
		"hit_points":          intRange(0, maxIntValue),
		"armor_class":         intRange(0, maxIntValue),
		"speed":               intRange(0, maxIntValue),
		"personality_traits":  optStrSchema(),
		"ideals":              optStrSchema(),
		"bonds":               optStrSchema(),
		"flaws":               optStrSchema(),
	}
	if input {
		p["class_"] = obj{"type": "string", "maxLength": maxStringRunes, "description": "The hero's class; give class_ or its alias class, not both (both is 422)"}
		p["class"] = obj{"type": "string", "maxLength": maxStringRunes, "description": "Alias of class_; give class_ or class, not both (both is 422)"}
		p["id"] = obj{"type": "string", "format": "uuid", "description": "Ignored on create; on replace it must equal the path's id"}
	}
	return p
}

// openAPISchemas are the hero schema and the error shapes.
func openAPISchemas() obj {
	skills := obj{}
	for _, s := range skillNames {
		skills[s] = obj{"type": "boolean", "default": false}
	}
	return obj{
		"Hero": obj{"type": "object", "properties": heroProperties(false), "additionalProperties": false,
			"required": []string{"id", "name", "race", "class_", "level", "background", "alignment", "ability_scores",
				"skill_proficiencies", "equipment", "spells", "hit_points", "armor_class", "speed",
				"personality_traits", "ideals", "bonds", "flaws"}},
		"HeroInput": obj{"type": "object", "properties": heroProperties(true), "additionalProperties": false,
			"required":    []string{"name", "race", "level", "ability_scores", "equipment", "hit_points", "armor_class", "speed"},
			"description": "A hero to create or replace. class_ (or its alias class) is required too. As in FastAPI (pydantic v2 lax mode), an integer may also be sent as a string (\"5\") and a boolean as \"true\"/\"false\", \"yes\"/\"no\", \"on\"/\"off\", \"1\"/\"0\" or 1/0.",
			"oneOf":       []obj{{"required": []string{"class_"}}, {"required": []string{"class"}}}},
		"AbilityScores": obj{"type": "object", "additionalProperties": false,
			"required": []string{"strength", "dexterity", "constitution", "intelligence", "wisdom", "charisma"},
			"properties": obj{"strength": intRange(1, 30), "dexterity": intRange(1, 30), "constitution": intRange(1, 30),
				"intelligence": intRange(1, 30), "wisdom": intRange(1, 30), "charisma": intRange(1, 30)}},
		"SkillProficiencies": obj{"type": "object", "additionalProperties": false, "properties": skills},
		"Equipment": obj{"type": "object", "additionalProperties": false,
			"properties": obj{"weapon": optStrSchema(), "armor": optStrSchema(), "items": obj{"type": "array", "items": strSchema(), "maxItems": maxListItems, "default": []string{}}}},
		"Spell": obj{"type": "object", "additionalProperties": false,
			"required": []string{"name", "level", "casting_time", "range", "components", "duration"},
			"properties": obj{"name": strSchema(), "level": intRange(0, 9), "casting_time": strSchema(), "range": strSchema(),
				"components": obj{"type": "array", "items": strSchema(), "maxItems": maxListItems}, "duration": strSchema()}},
		"Message":   obj{"type": "object", "required": []string{"message"}, "properties": obj{"message": obj{"type": "string"}}},
		"HTTPError": obj{"type": "object", "required": []string{"detail"}, "properties": obj{"detail": obj{"type": "string"}}},
		"HTTPValidationError": obj{"type": "object", "required": []string{"detail"},
			"properties": obj{"detail": obj{"type": "array", "items": ref("ValidationError")}}},
		"ValidationError": obj{"type": "object", "required": []string{"loc", "msg", "type", "input"}, "properties": obj{
			"loc":   obj{"type": "array", "items": obj{"anyOf": []obj{{"type": "string"}, {"type": "integer"}}}},
			"msg":   obj{"type": "string"},
			"type":  obj{"type": "string", "description": "pydantic's error type: missing, int_type, int_parsing, int_from_float, bool_type, bool_parsing, string_type, extra_forbidden, greater_than_equal, less_than_equal, string_too_long, too_long, json_invalid, …"},
			"input": obj{"description": "The offending value as sent (for missing, the object it is missing from); a value whose JSON is over 256 bytes is cut and ends in …, as a string"},
			"ctx":   obj{"type": "object"},
		}},
	}
}
