#!/usr/bin/env bash
# Builds the local images the tests and examples use, without a registry:
# `slipway-test/busybox:1`, a tiny image from Debian's busybox-static.
# Idempotent: an image whose content label matches is kept.
set -euo pipefail

content_of_busybox() { sha256sum /bin/busybox | cut -c1-16; }

image_label() { docker image inspect --format '{{ index .Config.Labels "io.slipway.content" }}' "$1" 2>/dev/null || true; }

want="$(content_of_busybox)-v2"   # bump the suffix when this recipe changes
if [ "$(image_label slipway-test/busybox:1)" != "$want" ]; then
  echo "== building slipway-test/busybox:1 from busybox-static"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/tmp" "$root/workspace" "$root/etc"
  chmod 1777 "$root/tmp"   # as in real images: Docker copies it onto the tmpfs
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/workspace:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\napp:x:1000:\n' > "$root/etc/group"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' \
    --change "LABEL io.slipway.content=$want" \
    - slipway-test/busybox:1 >/dev/null
fi
echo "images: slipway-test/busybox:1 ready"
