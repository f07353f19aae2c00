#!/usr/bin/env bash
# deploy/containerapps.sh: create (or bring up to date) everything heroes-auth
# needs on Azure Container Apps, with no client secret and no storage key:
#
#   registry (ACR) ─ image built by ACR Tasks (no local Docker needed)
#   storage account (shared keys off) ─ table "heroes"
#   user-assigned managed identity ─ AcrPull on the registry
#                                  ─ Storage Table Data Contributor on the account
#                                  ─ federated credential of the app registration
#   Container Apps environment ─ container app: 2+ replicas, probes on
#                                /healthz and /readyz, SESSION_KEY from a secret
#   app registration ─ Web redirect URI …/auth/callback, SPA redirect URI
#                      …/docs/oauth2-redirect (Authorize in /docs)
#   optional: a deployer identity that GitHub Actions signs in as (OIDC)
#
# Usage (from anywhere; az login first, with Owner or Contributor + User
# Access Administrator on the subscription or resource group, and owner of
# the app registration):
#
#   APP_CLIENT_ID=<app registration client id> deploy/containerapps.sh
#   APP_CLIENT_ID=… GITHUB_REPO=owner/repo deploy/containerapps.sh   # + GitHub deployer
#   DRY_RUN=1 APP_CLIENT_ID=… deploy/containerapps.sh                # print the az commands only
#
# Every step checks what exists first, so running it again is safe: it
# updates the container app to the new image and keeps the SESSION_KEY
# secret it finds. deploy/README.md explains the recipe.
set -euo pipefail

# ---------------------------------------------------------------- settings
# Override any of these from the environment.
LOCATION="${LOCATION:-westeurope}"
RESOURCE_GROUP="${RESOURCE_GROUP:-heroes-auth-rg}"
APP_NAME="${APP_NAME:-heroes-auth}"                 # container app (2–32 chars, lowercase, -)
ENV_NAME="${ENV_NAME:-heroes-auth-env}"             # Container Apps environment
IDENTITY_NAME="${IDENTITY_NAME:-heroes-auth-id}"    # the app's user-assigned managed identity
TABLE_NAME="${TABLE_NAME:-heroes}"
IMAGE_REPO="${IMAGE_REPO:-heroes-auth}"             # repository in the registry
FIC_NAME="${FIC_NAME:-heroes-auth-containerapp}"    # federated credential on the app registration
# The app registration (README.md, "Setting it up with Entra ID"). Required.
APP_CLIENT_ID="${APP_CLIENT_ID:-}"
# Scopes the sign-in asks for; default: the three scopes of README.md under
# the App ID URI api://<APP_CLIENT_ID> (set API_SCOPE if the registration's
# Application ID URI is another one).
API_SCOPE="${API_SCOPE:-}"
# The cloud: Entra's authority host and the audience of the token exchange
# (the managed identity's token that stands in for a client secret). Both
# reach the container (AZURE_AUTHORITY_HOST, AZURE_TOKEN_EXCHANGE_AUDIENCE)
# and the federated credentials. FIC_AUDIENCE follows AUTHORITY_HOST unless
# set: US Gov https://login.microsoftonline.us -> api://AzureADTokenExchangeUSGov;
# China https://login.chinacloudapi.cn -> api://AzureADTokenExchangeChina.
# az must be signed in to the same cloud (az cloud set --name ...; az login).
AUTHORITY_HOST="${AUTHORITY_HOST:-https://login.microsoftonline.com}"
AUTHORITY_HOST="${AUTHORITY_HOST%/}"
case "$AUTHORITY_HOST" in
https://login.microsoftonline.us | https://login.usgovcloudapi.net)
	default_fic_audience=api://AzureADTokenExchangeUSGov azure_environment=azureusgovernment ;;
https://login.chinacloudapi.cn | https://login.partner.microsoftonline.cn)
	default_fic_audience=api://AzureADTokenExchangeChina azure_environment=azurechinacloud ;;
*) default_fic_audience=api://AzureADTokenExchange azure_environment=azurecloud ;;
esac
FIC_AUDIENCE="${FIC_AUDIENCE:-$default_fic_audience}"
# GitHub Actions deployer (optional): owner/repo and the branch it deploys.
GITHUB_REPO="${GITHUB_REPO:-}"
GITHUB_BRANCH="${GITHUB_BRANCH:-main}"
DEPLOYER_IDENTITY_NAME="${DEPLOYER_IDENTITY_NAME:-heroes-auth-deployer}"
# Image tag; SKIP_BUILD=1 deploys an existing tag without building.
IMAGE_TAG="${IMAGE_TAG:-}"
SKIP_BUILD="${SKIP_BUILD:-0}"
# Globally unique names (registry, storage account) are derived from the
# subscription and resource group unless set, so reruns find the same ones.
ACR_NAME="${ACR_NAME:-}"
STORAGE_ACCOUNT="${STORAGE_ACCOUNT:-}"
DRY_RUN="${DRY_RUN:-0}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="$REPO_ROOT/deploy/containerapp.yaml"

# ---------------------------------------------------------------- helpers
die() { echo "containerapps.sh: $*" >&2; exit 1; }
step() { echo "== $*" >&2; }
dry() { [[ "$DRY_RUN" == 1 ]]; }

# az_run ARGS…: run an az command whose output is not needed.
az_run() {
	if dry; then echo "+ az $*" >&2; return 0; fi
	az "$@" --only-show-errors --output none
}

# az_get NAME ARGS…: print one value (tsv) from an az query; DRY_RUN prints <NAME>.
az_get() {
	local name=$1
	shift
	if dry; then echo "+ az $*" >&2; echo "<$name>"; return 0; fi
	az "$@" --only-show-errors --output tsv
}

# az_exists ARGS…: status 0 when the az show command finds the resource.
# DRY_RUN answers "missing", so the create commands get printed.
az_exists() {
	if dry; then echo "+ az $*   # exists?" >&2; return 1; fi
	az "$@" --only-show-errors --output none >/dev/null 2>&1
}

# assign_role PRINCIPAL_ID ROLE SCOPE: one role assignment, created once.
# --assignee-principal-type avoids a Graph lookup, which fails for a
# managed identity created seconds ago.
assign_role() {
	local principal=$1 role=$2 scope=$3 count
	# Filtered by principalId in the query, not --assignee (a Graph lookup).
	count="$(az_get COUNT role assignment list --scope "$scope" --role "$role" \
		--query "length([?principalId=='$principal'])")"
	if [[ "$count" == 0 || "$count" == "<COUNT>" ]]; then
		az_run role assignment create --assignee-object-id "$principal" \
			--assignee-principal-type ServicePrincipal --role "$role" --scope "$scope"
	fi
}

# ---------------------------------------------------------------- 0. checks
[[ -n "$APP_CLIENT_ID" ]] || die "set APP_CLIENT_ID to the app registration's Application (client) ID"
[[ -f "$TEMPLATE" ]] || die "missing $TEMPLATE"
if ! dry; then
	command -v az >/dev/null || die "the Azure CLI (az) is required: https://learn.microsoft.com/cli/azure/install-azure-cli"
	az account show --output none 2>/dev/null || die "run az login first"
	# The federated credential, the container's settings and az's own
	# sign-in must all be in one cloud.
	az_authority="$(az cloud show --query endpoints.activeDirectory --output tsv)"
	[[ "${az_authority%/}" == "$AUTHORITY_HOST" ]] ||
		die "az is signed in to the cloud of $az_authority but AUTHORITY_HOST is $AUTHORITY_HOST: set AUTHORITY_HOST (and FIC_AUDIENCE) for that cloud, or az cloud set --name <cloud> and az login"
fi
# The az containerapp commands come as an extension; without it a script
# would stop at an install prompt.
az_run extension add --name containerapp --upgrade
[[ -n "$API_SCOPE" ]] || API_SCOPE="api://$APP_CLIENT_ID/Heroes.Read api://$APP_CLIENT_ID/Heroes.Create api://$APP_CLIENT_ID/Admin"

step "subscription, tenant, names"
SUBSCRIPTION_ID="$(az_get SUBSCRIPTION_ID account show --query id)"
TENANT_ID="$(az_get TENANT_ID account show --query tenantId)"
suffix="$(printf '%s/%s' "$SUBSCRIPTION_ID" "$RESOURCE_GROUP" | sha256sum | cut -c1-10)"
ACR_NAME="${ACR_NAME:-heroesauth$suffix}"               # 5–50 letters and digits
STORAGE_ACCOUNT="${STORAGE_ACCOUNT:-heroesauth$suffix}" # 3–24 lowercase letters and digits
if [[ -z "$IMAGE_TAG" ]]; then
	IMAGE_TAG="$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)"
fi
echo "registry $ACR_NAME, storage account $STORAGE_ACCOUNT, image tag $IMAGE_TAG" >&2

# Resource providers used below (registering twice is harmless).
for ns in Microsoft.App Microsoft.OperationalInsights Microsoft.ContainerRegistry Microsoft.Storage Microsoft.ManagedIdentity; do
	az_run provider register --namespace "$ns"
done

# ---------------------------------------------------------------- 1. resource group
step "resource group $RESOURCE_GROUP"
az_run group create --name "$RESOURCE_GROUP" --location "$LOCATION"
RG_ID="/subscriptions/$SUBSCRIPTION_ID/resourceGroups/$RESOURCE_GROUP"

# ---------------------------------------------------------------- 2. registry and image
step "container registry $ACR_NAME"
if ! az_exists acr show --name "$ACR_NAME" --resource-group "$RESOURCE_GROUP"; then
	# Basic SKU, admin user off: pulls use the managed identity (AcrPull).
	az_run acr create --name "$ACR_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" \
		--sku Basic --admin-enabled false
fi
ACR_ID="$(az_get ACR_ID acr show --name "$ACR_NAME" --resource-group "$RESOURCE_GROUP" --query id)"
ACR_LOGIN_SERVER="$(az_get ACR_LOGIN_SERVER acr show --name "$ACR_NAME" --resource-group "$RESOURCE_GROUP" --query loginServer)"
IMAGE="$ACR_LOGIN_SERVER/$IMAGE_REPO:$IMAGE_TAG"

if [[ "$SKIP_BUILD" != 1 ]]; then
	step "build $IMAGE with ACR Tasks (Dockerfile at the repository root)"
	# The build context honours .dockerignore: no .git, .env_oauth, *.pem or tests.
	az_run acr build --registry "$ACR_NAME" --image "$IMAGE_REPO:$IMAGE_TAG" \
		--file "$REPO_ROOT/Dockerfile" "$REPO_ROOT"
fi

# ---------------------------------------------------------------- 3. storage account and table
step "storage account $STORAGE_ACCOUNT and table $TABLE_NAME"
if ! az_exists storage account show --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP"; then
	# Shared key access off: data can only be reached with Entra tokens, so
	# no connection string with a key exists that could leak.
	az_run storage account create --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" \
		--location "$LOCATION" --kind StorageV2 --sku Standard_LRS \
		--min-tls-version TLS1_2 --https-only true \
		--allow-blob-public-access false --allow-shared-key-access false
fi
STORAGE_ID="$(az_get STORAGE_ID storage account show --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" --query id)"
# The table endpoint as the account names it, with its cloud's suffix
# (table.core.windows.net, table.core.usgovcloudapi.net,
# table.core.chinacloudapi.cn), without the trailing slash.
TABLE_ENDPOINT="$(az_get TABLE_ENDPOINT storage account show --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" \
	--query primaryEndpoints.table)"
TABLE_ENDPOINT="${TABLE_ENDPOINT%/}"
# The table through the management plane (an idempotent PUT), so the person
# running this needs no data role on the account. The service would also
# create it at start.
az_run rest --method put \
	--url "$STORAGE_ID/tableServices/default/tables/$TABLE_NAME?api-version=2023-05-01" \
	--body '{}'

# ---------------------------------------------------------------- 4. managed identity and its roles
step "user-assigned managed identity $IDENTITY_NAME"
# Creating an existing identity returns it unchanged (same ids).
az_run identity create --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION"
# shellcheck disable=SC2034 # read by render through ${!name}
IDENTITY_ID="$(az_get IDENTITY_ID identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query id)"
# shellcheck disable=SC2034 # read by render through ${!name}
IDENTITY_CLIENT_ID="$(az_get IDENTITY_CLIENT_ID identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query clientId)"
IDENTITY_PRINCIPAL_ID="$(az_get IDENTITY_PRINCIPAL_ID identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query principalId)"

step "role assignments of $IDENTITY_NAME (may take minutes to take effect)"
assign_role "$IDENTITY_PRINCIPAL_ID" "AcrPull" "$ACR_ID"
assign_role "$IDENTITY_PRINCIPAL_ID" "Storage Table Data Contributor" "$STORAGE_ID"

# ---------------------------------------------------------------- 5. federated credential of the app registration
# Entra accepts a token of this managed identity (aud = FIC_AUDIENCE, sub =
# its principal id, iss = the tenant's v2.0 issuer) as the client assertion
# of the app registration: the service needs no client secret.
step "federated credential $FIC_NAME on app registration $APP_CLIENT_ID"
fic_file="$(mktemp)"
trap 'rm -f "$fic_file" "${rendered:-}"' EXIT
cat >"$fic_file" <<EOF
{
  "name": "$FIC_NAME",
  "issuer": "$AUTHORITY_HOST/$TENANT_ID/v2.0",
  "subject": "$IDENTITY_PRINCIPAL_ID",
  "description": "heroes-auth on Azure Container Apps: user-assigned managed identity $IDENTITY_NAME",
  "audiences": ["$FIC_AUDIENCE"]
}
EOF
if az_exists ad app federated-credential show --id "$APP_CLIENT_ID" --federated-credential-id "$FIC_NAME"; then
	# Update in place, e.g. after the identity was recreated with a new principal id.
	az_run ad app federated-credential update --id "$APP_CLIENT_ID" --federated-credential-id "$FIC_NAME" \
		--parameters "@$fic_file"
else
	az_run ad app federated-credential create --id "$APP_CLIENT_ID" --parameters "@$fic_file"
fi

# ---------------------------------------------------------------- 6. Container Apps environment
step "Container Apps environment $ENV_NAME"
if ! az_exists containerapp env show --name "$ENV_NAME" --resource-group "$RESOURCE_GROUP"; then
	# Creates a Log Analytics workspace for the logs as well.
	az_run containerapp env create --name "$ENV_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION"
fi
# shellcheck disable=SC2034 # read by render through ${!name}
ENVIRONMENT_ID="$(az_get ENVIRONMENT_ID containerapp env show --name "$ENV_NAME" --resource-group "$RESOURCE_GROUP" --query id)"
ENV_DOMAIN="$(az_get ENV_DOMAIN containerapp env show --name "$ENV_NAME" --resource-group "$RESOURCE_GROUP" --query properties.defaultDomain)"
APP_FQDN="$APP_NAME.$ENV_DOMAIN"

# ---------------------------------------------------------------- 7. the container app
step "container app $APP_NAME ($IMAGE)"
app_exists=0
if az_exists containerapp show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP"; then
	app_exists=1
fi
# SESSION_KEY: 32 random bytes, made once and kept in the app's secret store;
# reruns reuse the stored value so existing login cookies stay valid. It is
# never printed and only written to a private temporary file.
SESSION_KEY=""
if [[ "$app_exists" == 1 ]]; then
	SESSION_KEY="$(az_get SESSION_KEY containerapp secret show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
		--secret-name session-key --query value 2>/dev/null || true)"
fi
if dry; then
	SESSION_KEY="<made at deploy time>"
elif [[ -z "$SESSION_KEY" ]]; then
	SESSION_KEY="$(head -c 32 /dev/urandom | base64)"
fi

# Fill in deploy/containerapp.yaml: plain ${NAME} replacement in bash, so no
# value (the secret included) appears on a command line.
render() {
	local text name
	text="$(<"$TEMPLATE")"
	for name in LOCATION APP_NAME RESOURCE_GROUP IDENTITY_ID ENVIRONMENT_ID ACR_LOGIN_SERVER SESSION_KEY \
		IMAGE TENANT_ID APP_CLIENT_ID API_SCOPE APP_FQDN IDENTITY_CLIENT_ID STORAGE_ACCOUNT TABLE_NAME \
		TABLE_ENDPOINT AUTHORITY_HOST FIC_AUDIENCE; do
		# The replacement is quoted so that & in a value stays literal (bash 5.2).
		text="${text//"\${$name}"/"${!name}"}"
	done
	# Any placeholder left outside comments is a template/script mismatch.
	local left
	# shellcheck disable=SC2016 # a literal ${ is what is looked for
	left="$(grep -v '^[[:space:]]*#' <<<"$text" | grep -o '\${[A-Za-z_]*}' | sort -u | tr '\n' ' ' || true)"
	[[ -z "$left" ]] || die "containerapp.yaml has placeholders this script does not fill: $left"
	printf '%s\n' "$text"
}
rendered="$(umask 077 && mktemp)"
render >"$rendered"
if dry; then
	# DRY_RUN shows the filled-in template (with no secret in it) on stdout.
	cat "$rendered"
fi
if [[ "$app_exists" == 1 ]]; then
	az_run containerapp update --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" --yaml "$rendered"
else
	az_run containerapp create --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" --yaml "$rendered"
fi

# ---------------------------------------------------------------- 8. redirect URIs
# The app registration must list https://<fqdn>/auth/callback exactly
# (REDIRECT_URI). Added to the existing Web redirect URIs, none removed.
step "redirect URI https://$APP_FQDN/auth/callback on the app registration"
redirect="https://$APP_FQDN/auth/callback"
mapfile -t uris < <(az_get REDIRECT_URIS ad app show --id "$APP_CLIENT_ID" --query 'web.redirectUris[]')
if ! printf '%s\n' "${uris[@]}" | grep -qxF "$redirect"; then
	if [[ "${uris[0]:-}" == "<REDIRECT_URIS>" ]]; then uris=(); fi
	az_run ad app update --id "$APP_CLIENT_ID" --web-redirect-uris "${uris[@]}" "$redirect"
fi

# /docs (Swagger UI's Authorize) redeems its code in the browser, which Entra
# allows only for a redirect URI of the single-page-application platform:
# https://<fqdn>/docs/oauth2-redirect. az ad app update has no option for
# it, so Microsoft Graph's application update (PATCH /applications/{object
# id}, spa.redirectUris) through az rest, on the Graph of az's own cloud.
# The PATCH replaces the list: it is sent with the URIs already there.
step "SPA redirect URI https://$APP_FQDN/docs/oauth2-redirect on the app registration (Authorize in /docs)"
spa_redirect="https://$APP_FQDN/docs/oauth2-redirect"
mapfile -t spa_uris < <(az_get SPA_REDIRECT_URIS ad app show --id "$APP_CLIENT_ID" --query 'spa.redirectUris[]')
if [[ "${spa_uris[0]:-}" == "<SPA_REDIRECT_URIS>" ]]; then spa_uris=(); fi
if ! printf '%s\n' "${spa_uris[@]}" | grep -qxF "$spa_redirect"; then
	APP_OBJECT_ID="$(az_get APP_OBJECT_ID ad app show --id "$APP_CLIENT_ID" --query id)"
	GRAPH_URL="$(az_get GRAPH_URL cloud show --query endpoints.microsoftGraphResourceId)"
	spa_json=""
	for u in "${spa_uris[@]}" "$spa_redirect"; do
		# A redirect URI holds no quote or backslash; refuse to build bad JSON.
		[[ "$u" != *[\"\\]* ]] || die "an SPA redirect URI of the app registration holds a quote or backslash: $u"
		spa_json+="${spa_json:+,}\"$u\""
	done
	az_run rest --method PATCH --uri "${GRAPH_URL%/}/v1.0/applications/$APP_OBJECT_ID" \
		--headers Content-Type=application/json --body "{\"spa\":{\"redirectUris\":[$spa_json]}}"
fi

# ---------------------------------------------------------------- 9. GitHub Actions deployer (optional)
if [[ -n "$GITHUB_REPO" ]]; then
	step "GitHub Actions deployer identity $DEPLOYER_IDENTITY_NAME for $GITHUB_REPO@$GITHUB_BRANCH"
	az_run identity create --name "$DEPLOYER_IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION"
	DEPLOYER_CLIENT_ID="$(az_get DEPLOYER_CLIENT_ID identity show --name "$DEPLOYER_IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query clientId)"
	DEPLOYER_PRINCIPAL_ID="$(az_get DEPLOYER_PRINCIPAL_ID identity show --name "$DEPLOYER_IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query principalId)"
	# GitHub's OIDC token for a push to the branch: iss, sub and aud as below.
	gh_subject="repo:$GITHUB_REPO:ref:refs/heads/$GITHUB_BRANCH"
	if ! az_exists identity federated-credential show --name github-deploy \
		--identity-name "$DEPLOYER_IDENTITY_NAME" --resource-group "$RESOURCE_GROUP"; then
		az_run identity federated-credential create --name github-deploy \
			--identity-name "$DEPLOYER_IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" \
			--issuer https://token.actions.githubusercontent.com \
			--subject "$gh_subject" --audiences "$FIC_AUDIENCE"
	fi
	# Contributor on this resource group only: az acr build (ACR Tasks) and
	# az containerapp update; it cannot grant roles to anyone.
	assign_role "$DEPLOYER_PRINCIPAL_ID" "Contributor" "$RG_ID"
	cat >&2 <<EOF

Set these GitHub Actions *variables* (Settings → Secrets and variables →
Actions → Variables; none of them is a secret):
  AZURE_CLIENT_ID=$DEPLOYER_CLIENT_ID
  AZURE_TENANT_ID=$TENANT_ID
  AZURE_SUBSCRIPTION_ID=$SUBSCRIPTION_ID
  AZURE_RESOURCE_GROUP=$RESOURCE_GROUP
  ACR_NAME=$ACR_NAME
  CONTAINERAPP_NAME=$APP_NAME
EOF
	if [[ "$azure_environment" != azurecloud || "$FIC_AUDIENCE" != api://AzureADTokenExchange ]]; then
		# azure/login's environment and audience inputs (deploy.yml reads
		# these); the environment follows AUTHORITY_HOST, not the audience.
		cat >&2 <<EOF
  AZURE_ENVIRONMENT=$azure_environment
  AZURE_TOKEN_EXCHANGE_AUDIENCE=$FIC_AUDIENCE
EOF
	fi
fi

# ---------------------------------------------------------------- 10. smoke test
step "https://$APP_FQDN"
if ! dry; then
	# New role assignments can take a few minutes; readiness waits for them.
	if curl --silent --show-error --fail --retry 30 --retry-delay 10 --retry-all-errors \
		--output /dev/null "https://$APP_FQDN/readyz"; then
		echo "ready: https://$APP_FQDN/auth/login" >&2
	else
		echo "not ready yet; see: az containerapp logs show --name $APP_NAME --resource-group $RESOURCE_GROUP --follow" >&2
	fi
fi
