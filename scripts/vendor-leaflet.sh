#!/usr/bin/env bash
# Re-vendor Leaflet (the live map's map library) from the npm registry into
# streams/static/vendor/leaflet/: the built dist files and the licence, nothing else. The
# service serves these files itself, so the map page needs no CDN at run time.
#
#   scripts/vendor-leaflet.sh            the pinned version below
#   LEAFLET_VERSION=1.9.4 scripts/vendor-leaflet.sh
#
# Needs node + npm. The tarball's integrity is checked by npm against the registry's
# metadata; the version, its integrity and the date are written to VERSION beside the files.
set -euo pipefail

VERSION="${LEAFLET_VERSION:-1.9.4}"
cd "$(dirname "$0")/.."
DEST="streams/static/vendor/leaflet"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

( cd "$work" && npm pack --silent "leaflet@${VERSION}" >/dev/null )
tgz="$(ls "$work"/leaflet-*.tgz)"
tar -xzf "$tgz" -C "$work"
integrity="$(cd "$work" && npm view "leaflet@${VERSION}" dist.integrity)"

rm -rf "$DEST"
mkdir -p "$DEST/images"
cp "$work/package/dist/leaflet.js" "$work/package/dist/leaflet.css" "$DEST/"
cp "$work/package/dist/images/"*.png "$DEST/images/"
cp "$work/package/LICENSE" "$DEST/LICENSE"
printf 'leaflet %s\nintegrity %s\nsource https://registry.npmjs.org/leaflet/-/leaflet-%s.tgz\n' \
    "$VERSION" "$integrity" "$VERSION" > "$DEST/VERSION"
echo "vendored leaflet ${VERSION} into ${DEST}"
