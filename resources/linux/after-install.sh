#!/bin/sh
# deb/rpm post-install: the `weft` command, the operator group and weftd, enabled and started.
set -e
ln -sf /opt/Weft/resources/linux/weft /usr/bin/weft
getent group weft >/dev/null 2>&1 || groupadd --system weft
install -m 0644 /opt/Weft/resources/linux/weftd.service /usr/lib/systemd/system/weftd.service 2>/dev/null \
  || install -m 0644 /opt/Weft/resources/linux/weftd.service /lib/systemd/system/weftd.service
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable weftd.service
  systemctl restart weftd.service || echo "weftd did not start; see: journalctl -u weftd" >&2
fi
exit 0
