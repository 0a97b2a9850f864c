#!/usr/bin/env bash
# System packages the test suite needs beyond the venv: Debian's Chromium for the browser test,
# PostgreSQL and Redis for the distributed Airflow test (tests/distributed runs its own instances
# from the installed binaries, on free loopback ports: no service is enabled or started here).
# Used by `make test` (and so by .ci/run). Installs through apt when missing and running as root;
# otherwise says in one line what to install.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Debian's postgresql puts its server outside PATH, under a directory per major version.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "make test needs: ${missing[*]} (run: sudo apt-get install -y --no-install-recommends ${missing[*]})" >&2
  exit 1
fi
echo "Installing ${missing[*]} through apt (once)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
