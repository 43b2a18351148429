#!/usr/bin/env bash
# Checks the linux-arm64 releases on an x86-64 machine: builds both flavours with scripts/release.sh, checks that
# every ELF file in them is AArch64 (with file(1), apart from release.sh's own check), and runs them under Debian's
# qemu-user-static: `noodle --version`, `noodle swarm-key`, an SQLite query through better-sqlite3, (full
# release) node-av's bindings, and an agent that starts and answers `noodle status`. onnxruntime-node's library is checked by its ELF header only: under qemu-user it
# crashes while loading (its CPU detection reads the host's /proc/cpuinfo), which says nothing about an arm64 box.
# Not part of the test suite: it fetches the arm64 Node and node-av addon (~70 MB) and takes a minute or two.
#
#   scripts/check-release.sh [--out DIR]
#
# Needs qemu-user-static (apt-get install qemu-user-static) and, for the dynamic loader, the arm64 C and C++
# runtimes: if this machine has no multiarch arm64 libraries it fetches libc6, libstdc++6 and libgcc-s1 for arm64
# (dpkg --add-architecture arm64, apt-get download) into a folder it passes to qemu with -L, installing nothing.
set -euo pipefail

fail() { printf 'check-release: %s\n' "$*" >&2; exit 1; }
log() { printf 'check-release: %s\n' "$*" >&2; }

main() {
  local repo out
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  out=$repo/.release
  while (($#)); do
    case $1 in
      --out) out=${2:?--out needs a folder}; shift 2 ;;
      *) fail "unknown option $1" ;;
    esac
  done
  command -v qemu-aarch64-static >/dev/null || fail 'qemu-aarch64-static is missing: apt-get install qemu-user-static'
  local sysroot=/
  if [[ ! -e /lib/ld-linux-aarch64.so.1 || ! -e /usr/lib/aarch64-linux-gnu/libstdc++.so.6 ]]; then
    sysroot=$out/cache/sysroot-linux-arm64
    if [[ ! -e $sysroot/lib/ld-linux-aarch64.so.1 ]]; then
      log "fetching the arm64 C and C++ runtimes into $sysroot"
      dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -qq; }
      local debs
      debs=$(mktemp -d)
      chmod 0755 "$debs"  # apt downloads as its own user where it can
      (cd "$debs" && apt-get download -qq libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64)
      mkdir -p "$sysroot"
      for deb in "$debs"/*.deb; do dpkg -x "$deb" "$sysroot"; done
      rm -rf "$debs"
    fi
  fi

  local flavour tarball unpacked dir version node elf foreign
  version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$repo/package.json")
  for flavour in '' --core; do
    tarball=$("$repo/scripts/release.sh" linux-arm64 $flavour --out "$out" | tail -n 1)
    unpacked=$(mktemp -d)
    tar -xzf "$tarball" -C "$unpacked"
    dir=$unpacked/$(basename "$tarball" .tar.gz)
    node=$dir/node_modules/node/bin/node
    elf=$(find "$dir" -type f -exec file {} + | grep -c ': *ELF' || true)
    foreign=$(find "$dir" -type f -exec file {} + | grep ': *ELF' | grep -v 'ARM aarch64' || true)
    [[ -z $foreign ]] || fail "not AArch64 in $tarball: $foreign"
    log "$(basename "$tarball"): $elf ELF files, all AArch64; $(du -sm "$dir" | cut -f1) MB unpacked, $(du -m "$tarball" | cut -f1) MB packed"
    run() { qemu-aarch64-static -L "$sysroot" "$node" "$@"; }
    [[ $(run "$dir/agent/main/noodle.js" --version) == "$version" ]] || fail "noodle --version under qemu did not print $version"
    [[ $(run "$dir/agent/main/noodle.js" swarm-key | head -n 1) == /key/swarm/psk/1.0.0/ ]] || fail 'noodle swarm-key under qemu printed no key'
    (cd "$dir" && run -e 'const D = require("better-sqlite3"); console.log(new D(":memory:").prepare("select 6 * 7 as n").get().n)' | grep -qx 42) \
      || fail 'better-sqlite3 does not load under qemu'
    local loaded='better-sqlite3'
    if [[ -z $flavour ]]; then
      loaded+=', node-av'
      (cd "$dir" && run --input-type=module -e 'const av = await import("node-av/api"); console.log(typeof av.Decoder)' | grep -qx function) \
        || fail 'node-av does not load under qemu'
    fi
    # An agent from it starts and answers its own `noodle status` (both under qemu: slow, hence the long wait).
    local data agent waited=0
    data=$(mktemp -d /tmp/nd-XXXXXX)
    run "$dir/agent/main/noodle.js" swarm-key >"$data/swarm.key"
    run "$dir/agent/main/noodle.js" agent --name arm-check --data-dir "$data" --swarm-key "$data/swarm.key" --listen /ip4/127.0.0.1/tcp/0 \
      --no-mdns --log-level warn >"$data/agent.log" 2>&1 &
    agent=$!
    until run "$dir/agent/main/noodle.js" status --data-dir "$data" 2>/dev/null | grep -q '^name *arm-check$'; do
      waited=$((waited + 1))
      if ((waited > 60)) || ! kill -0 "$agent" 2>/dev/null; then
        kill "$agent" 2>/dev/null || true
        fail "the agent of $(basename "$tarball") did not answer under qemu: $(tail -n 5 "$data/agent.log")"
      fi
      sleep 1
    done
    kill "$agent"
    wait "$agent" || true
    rm -rf "$data"
    log "$(basename "$tarball"): noodle --version, noodle swarm-key, $loaded and an agent answering noodle status run under qemu-aarch64"
    rm -rf "$unpacked"
  done
  log 'the arm64 releases check out'
}

main "$@"
