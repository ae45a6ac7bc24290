#!/bin/sh
# Installs the JavaScript SDK packages tests/json_fidelity.rs drives (exactly
# the versions in package-lock.json) into tests/js/node_modules, unless they
# are already there for this lockfile. Needs node and npm; without them it
# says so and succeeds, and the test skips itself with that reason.
set -eu
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/js/install.sh: node/npm not found; the JS SDK test will be skipped" >&2
    exit 0
fi
stamp=node_modules/.sluice-lock-sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
