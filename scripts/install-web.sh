#!/usr/bin/env bash
# Fetches the browser-side packages pinned in web/package-lock.json (hls.js) from the npm
# registry into web/node_modules, checking each tarball against the lock file's sha512
# integrity. Needs curl, tar and openssl, not node: the same bytes `npm ci` would install.
# Idempotent: does nothing when web/node_modules is newer than the lock file.
set -euo pipefail
cd "$(dirname "$0")/../web"
stamp=node_modules/.installed-from-lock
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ]; then
  exit 0
fi
registry="${NPM_REGISTRY:-https://registry.npmjs.org}"
# Lines `"node_modules/NAME": {`, then its "version" and "integrity" (npm's own layout).
awk '
  /^    "node_modules\// { name = $1; gsub(/"|node_modules\/|:/, "", name) }
  name && /"version":/ { version = $2; gsub(/[",]/, "", version) }
  name && /"integrity":/ { integrity = $2; gsub(/[",]/, "", integrity); print name, version, integrity; name = "" }
' package-lock.json | while read -r name version integrity; do
  url="$registry/$name/-/${name##*/}-$version.tgz"
  echo "fetching $name@$version"
  tmp=$(mktemp)
  curl -fsSL --retry 3 -o "$tmp" "$url"
  got="sha512-$(openssl dgst -sha512 -binary "$tmp" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    echo "$name@$version: integrity mismatch (lock $integrity, got $got)" >&2
    rm -f "$tmp"
    exit 1
  fi
  rm -rf "node_modules/$name"
  mkdir -p "node_modules/$name"
  tar -xzf "$tmp" -C "node_modules/$name" --strip-components=1
  rm -f "$tmp"
done
touch "$stamp"
