#!/bin/sh
# deb/rpm post-removal: stop and disable weftd (its stop takes the interface down), then remove what after-install added.
if [ -d /run/systemd/system ]; then
  systemctl disable --now weftd.service >/dev/null 2>&1 || true
fi
rm -f /usr/bin/weft /usr/lib/systemd/system/weftd.service /lib/systemd/system/weftd.service
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
