#!/usr/bin/env bash
# Build every image docker-compose.yaml needs without Docker Hub, from Debian's packages only.
#
#   deploy/offline/build-images.sh            # base + stand-ins, then the Driftloop image on that base
#   deploy/offline/build-images.sh --no-app   # base + stand-ins only
#   deploy/offline/build-images.sh --force    # debootstrap the Debian base again even if it exists
#
# The Debian base is reused when it exists (debootstrap cannot be cached); every other image is rebuilt with
# `docker build` each time, so a changed Dockerfile or script under deploy/offline/ always takes effect and an
# unchanged one costs seconds (BuildKit's layer cache).
#
# Makes (names overridable through the variables of the same name):
#   DEBIAN_MINBASE_IMAGE  driftloop/debian:bookworm-minbase  debootstrap --variant=minbase + docker import
#   DRIFTLOOP_BASE_IMAGE  driftloop/python:3.11-bookworm     Debian's python3 (3.11): stands in for python:3.11-slim-bookworm
#   POSTGRES_IMAGE        driftloop/postgres:15-bookworm     Debian's postgresql-15, same env contract as postgres:16-bookworm
#   REDIS_IMAGE           driftloop/redis:7-bookworm         Debian's redis-server 7.0, same contract as redis:7.2-bookworm
#   DRIFTLOOP_IMAGE       driftloop:local                    the repo's Dockerfile with BASE_IMAGE=$DRIFTLOOP_BASE_IMAGE
# and prints the lines to add to .env so that `docker compose up` uses them.
#
# Settings (environment):
#   DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR  default: what apt on this host uses, else deb.debian.org
#   DEBIAN_SUITE                            default: bookworm
#   EXTRA_CA_BUNDLE   PEM file added to pip's trust store during the build only (TLS-inspecting proxy); passed as
#                     a BuildKit secret, so it is in no image layer. Default: none.
#   DOCKER            docker CLI to use (must build with BuildKit); default: found automatically.
#   DOCKER_NETWORK    network of the build containers; default: host (package registries reachable as on the host)
#   DRIFTLOOP_GIT_COMMIT  recorded in the Driftloop image; default: git rev-parse HEAD
# Needs: root (debootstrap), debootstrap, a running Docker engine.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
force=0
app=1
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --no-app) app=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

suite="${DEBIAN_SUITE:-bookworm}"
minbase_image="${DEBIAN_MINBASE_IMAGE:-driftloop/debian:${suite}-minbase}"
python_image="${DRIFTLOOP_BASE_IMAGE:-driftloop/python:3.11-${suite}}"
postgres_image="${POSTGRES_IMAGE:-driftloop/postgres:15-${suite}}"
redis_image="${REDIS_IMAGE:-driftloop/redis:7-${suite}}"
app_image="${DRIFTLOOP_IMAGE:-driftloop:local}"
network="${DOCKER_NETWORK:-host}"

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- which docker CLI builds with BuildKit
# Docker CLIs from 23 on need the buildx plugin for BuildKit; older ones (Debian's docker.io 20.10) have it built in.
buildkit_cli() {
  local cli="$1" major
  command -v "$cli" >/dev/null 2>&1 || return 1
  if "$cli" buildx version >/dev/null 2>&1; then return 0; fi
  major="$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" || return 1
  [[ "$major" =~ ^[0-9]+$ ]] && (( major < 23 ))
}
if [[ -z "${DOCKER:-}" ]]; then
  for candidate in docker /usr/bin/docker; do
    if buildkit_cli "$candidate"; then DOCKER="$candidate"; break; fi
  done
  [[ -n "${DOCKER:-}" ]] || die "no docker CLI that builds with BuildKit: install the buildx plugin, or Debian's docker.io"
fi
export DOCKER_BUILDKIT=1
"$DOCKER" info >/dev/null 2>&1 || die "the Docker engine does not answer ($DOCKER info); start dockerd first"

exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
timed() {  # timed LABEL cmd...: run, then log the wall time
  local label="$1" start=$SECONDS; shift
  "$@"
  log "$label: $(( SECONDS - start )) s"
}

# ---------------------------------------------------------------- Debian mirrors (as apt on this host has them)
host_mirror() {  # host_mirror SUITE-REGEX: first URI apt uses for a matching suite
  local want="$1" file
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    awk -v want="$want" '
      /^[[:space:]]*$/ { if (uri != "" && suites ~ want) { print uri; exit } uri = ""; suites = ""; next }
      /^URIs:/ { uri = $2 } /^Suites:/ { suites = $0 }
      END { if (uri != "" && suites ~ want) print uri }' "$file" | head -1
  done | head -1
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$file" ]] || continue
    awk -v want="$want" '$1 == "deb" && $3 ~ want { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$file"
  done | head -1
}
mirror="${DEBIAN_MIRROR:-$(host_mirror "(^|[[:space:]])${suite}([[:space:]]|$)" | head -1)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="${DEBIAN_SECURITY_MIRROR:-$(host_mirror "${suite}-security" | head -1)}"
security="${security:-http://deb.debian.org/debian-security}"

# ---------------------------------------------------------------- 1. minimal Debian root filesystem → image
build_minbase() (  # a subshell: its EXIT trap removes the root filesystem
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  [[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
  root="$(mktemp -d /var/tmp/driftloop-minbase.XXXXXX)"
  trap 'rm -rf "$root" "$root.log"' EXIT
  log "debootstrap --variant=minbase $suite from $mirror"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -30 "$root.log" >&2; die "debootstrap failed"; }
  # apt sources (main, updates, security), no service starts during builds, no docs: as Debian's own images.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-nodoc" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/90docker-norecommends"
  # No package caches in layers (pkgcache.bin alone is tens of MB), as in Debian's official images.
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/tmp/* 2>/dev/null || true
  tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$minbase_image" >/dev/null
)

build_dockerfile() {  # build_dockerfile IMAGE DIR [build args...]
  local image="$1" dir="$2"; shift 2
  "$DOCKER" build --network "$network" --build-arg "MINBASE_IMAGE=$minbase_image" "$@" -t "$image" "$dir" >&2
}

if [[ "$force" == 0 ]] && exists "$minbase_image"; then
  log "$minbase_image exists (--force makes it again)"
else
  timed "minimal Debian base ($minbase_image)" build_minbase
fi
timed "Python base ($python_image)" build_dockerfile "$python_image" "$here/python"
timed "Postgres stand-in ($postgres_image)" build_dockerfile "$postgres_image" "$here/postgres"
timed "Redis stand-in ($redis_image)" build_dockerfile "$redis_image" "$here/redis"

if [[ "$app" == 1 ]]; then
  args=(--build-arg "BASE_IMAGE=$python_image"
        --build-arg "DRIFTLOOP_GIT_COMMIT=${DRIFTLOOP_GIT_COMMIT:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)}")
  if [[ -n "${EXTRA_CA_BUNDLE:-}" ]]; then
    [[ -r "$EXTRA_CA_BUNDLE" ]] || die "EXTRA_CA_BUNDLE=$EXTRA_CA_BUNDLE is not a readable file"
    args+=(--secret "id=extra_ca,src=$EXTRA_CA_BUNDLE")
  fi
  timed "Driftloop image ($app_image)" "$DOCKER" build --network "$network" "${args[@]}" -t "$app_image" "$repo" >&2
fi

cat <<ENV
# Add to .env so that docker compose uses the images built above:
DRIFTLOOP_BASE_IMAGE=$python_image
POSTGRES_IMAGE=$postgres_image
REDIS_IMAGE=$redis_image
DRIFTLOOP_IMAGE=$app_image
ENV
