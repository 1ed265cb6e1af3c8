#!/bin/sh
# Entrypoint of the redis:7 stand-in, as the official image's: arguments that
# are options or a .conf file go to redis-server; started as root, it takes
# ownership of /data and drops to the redis user (needs only the CHOWN,
# SETUID and SETGID capabilities; works under no-new-privileges).
set -e

case "${1:-}" in
  -*|*.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  HOME=/data exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# An appropriate umask, as the official image (unless one was set already).
if [ "$(umask)" = 0022 ]; then
  umask 0077
fi

exec "$@"
