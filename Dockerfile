# heroes-auth container image.
#
#   docker build -t heroes-auth .
#   docker run --rm -p 8000:8000 -e AZURE_TENANT_ID=… -e AZURE_CLIENT_ID=… heroes-auth
#
# No secret is baked in: every setting comes from the environment at run time
# (README.md, "Settings"; deploy/README.md for Azure Container Apps).
# .ci/check-deploy builds the binary with exactly the flags below and runs it
# as uid 65532 with only a data directory writable, on machines without a
# container engine; keep the two in step.

# Stage 1, build: the official Go image compiles a static binary. CGO off
# (no libc needed at run time), -trimpath (no build paths in the binary),
# -s -w (no symbol table or DWARF). go.mod has no requires, so there is
# nothing to download. The empty /out/data becomes the writable data
# directory of the runtime stage (distroless has no shell to mkdir/chown).
# Pin both images by digest (image@sha256:…) in a real pipeline, so a
# rebuild of the same commit gives the same image.
FROM golang:1.26 AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/heroes-auth . \
 && mkdir -p /out/data

# Stage 2, runtime: distroless static (CA certificates for the https calls to
# Entra and Azure Storage, tzdata, /etc/passwd; no shell, no package manager),
# running as the numeric non-root user 65532 so Kubernetes' runAsNonRoot can
# verify it.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/heroes-auth /heroes-auth
# /data is the one directory the service may write: HEROES_FILE=/data/heroes.json
# for the file store (one replica only; mount a volume to keep it). The
# azuretable store needs no local storage at all.
COPY --from=build --chown=65532:65532 /out/data /data
# The working directory is where .env_oauth would be read from; / is not
# writable by 65532 (the nonroot tag's default home directory would be).
WORKDIR /
# Listen on :8000 in the container. PORT applies when ADDR is unset (ADDR
# wins when both are set); on App Service also set WEBSITES_PORT=8000, which
# is not passed into the container.
ENV PORT=8000
EXPOSE 8000
USER 65532:65532
# No HEALTHCHECK: there is no shell or curl in the image. The platform probes
# GET /healthz (liveness) and GET /readyz (readiness) over HTTP on port 8000.
ENTRYPOINT ["/heroes-auth"]
