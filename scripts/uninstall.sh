#!/usr/bin/env bash
# Removes the Noodle agent that scripts/install.sh installed: the service, the app and the noodle command.
# The agent's data (/var/lib/noodle: identity, store, models) and config (/etc/noodle: config, swarm key) stay,
# so a reinstall comes back as the same node of the same mesh, unless --purge, which removes them and the user.
#
#   sudo scripts/uninstall.sh [--purge] [--prefix DIR] [--root DIR]
#
# Everything happens in main(), called on the last line, so a truncated download runs nothing at all.
set -euo pipefail

log() { printf 'noodle uninstall: %s\n' "$*"; }
fail() { printf 'noodle uninstall: %s\n' "$*" >&2; exit 1; }

main() {
  local purge=false prefix=/opt/noodle root=/
  while (($#)); do
    case $1 in
      --purge) purge=true; shift ;;
      --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
      --root) root=${2:?--root needs a folder}; shift 2 ;;
      -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) fail "unknown option $1 (see --help)" ;;
    esac
  done
  [[ $(id -u) -eq 0 ]] || fail 'run me as root (sudo)'
  root=${root%/}
  if [[ -z $root && -d /run/systemd/system ]]; then
    systemctl disable --now noodle-agent.service 2>/dev/null || true
  fi
  rm -rf "$root/etc/systemd/system/noodle-agent.service" "$root/etc/systemd/system/noodle-agent.service.d"
  [[ -z $root && -d /run/systemd/system ]] && systemctl daemon-reload
  if [[ $(readlink "$root/usr/local/bin/noodle" 2>/dev/null) == "$prefix/bin/noodle" ]]; then
    rm -f "$root/usr/local/bin/noodle"
  fi
  rm -rf "${root}${prefix:?}"
  log "removed the service and $prefix"
  if $purge; then
    rm -rf "$root/etc/noodle" "$root/var/lib/noodle"
    if [[ -z $root ]] && getent passwd noodle >/dev/null; then
      userdel noodle
    fi
    log 'purged /etc/noodle, /var/lib/noodle and the noodle user'
  else
    log 'kept /etc/noodle and /var/lib/noodle (--purge removes them)'
  fi
}

main "$@"
