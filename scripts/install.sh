#!/usr/bin/env bash
# Installs or upgrades the Noodle agent on this box as a systemd service. Run it as root with --release and a
# tarball from scripts/release.sh for this box's architecture, or from a checkout whose node_modules were installed
# for this box's architecture:
#
#   sudo scripts/install.sh [--release FILE] [--swarm-key FILE] [--name NAME] [--bootstrap ADDR]... [--mqtt-url URL]
#                           [--gpu] [--prefix DIR] [--root DIR] [--no-start]
#
# What goes where (under --root, default /):
#   <prefix>/releases/<version>   the app and its pinned Node runtime (<version>-core for a --core release);
#                                 <prefix>/current links the one in use
#   <prefix>/bin/noodle           the command, also linked as /usr/local/bin/noodle
#   /etc/noodle/config.json       created once from the flags; flags given again later update their keys
#   /etc/noodle/swarm.key         0640 root:noodle; from --swarm-key, or made on the first box
#   /var/lib/noodle               the agent's state (systemd's StateDirectory)
#   /etc/systemd/system/noodle-agent.service (+ noodle-agent.service.d/gpu.conf with --gpu)
# Running it again with the same release and flags changes nothing. An upgrade that fails its health check is
# rolled back to the release before it. Everything happens in main(), called on the last line, so a truncated
# download runs nothing at all.
set -euo pipefail

# Stand-ins for tests: a service manager other than systemctl, and a shorter wait for the health check.
SYSTEMCTL=${NOODLE_INSTALL_SYSTEMCTL:-systemctl}
HEALTH_TIMEOUT_S=${NOODLE_INSTALL_HEALTH_TIMEOUT_S:-60}

usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
}

log() { printf 'noodle install: %s\n' "$*"; }
fail() { printf 'noodle install: %s\n' "$*" >&2; exit 1; }

# Copies $1 to $2 with mode $3 unless $2 already has the same bytes; says whether it changed anything.
install_file() {
  local from=$1 to=$2 mode=$3
  if [[ -f $to ]] && cmp -s "$from" "$to"; then
    return 1
  fi
  install -D -m "$mode" "$from" "$to"
  return 0
}

# A version names the folder under releases/ a release installs into: x.y.z, maybe with a pre-release or build
# suffix, and nothing that could climb out of it (no slash) or say more than one thing (no newline).
valid_version() { [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]]; }

main() {
  local swarm_key='' name='' mqtt_url='' gpu=false prefix=/opt/noodle root=/ start=true tarball='' release_version=''
  local -a bootstrap=()
  while (($#)); do
    case $1 in
      --release) tarball=${2:?--release needs a tarball from scripts/release.sh}; shift 2 ;;
      --swarm-key) swarm_key=${2:?--swarm-key needs a file}; shift 2 ;;
      --name) name=${2:?--name needs a value}; shift 2 ;;
      --bootstrap) bootstrap+=("${2:?--bootstrap needs an address}"); shift 2 ;;
      --mqtt-url) mqtt_url=${2:?--mqtt-url needs a URL}; shift 2 ;;
      --gpu) gpu=true; shift ;;
      --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
      --root) root=${2:?--root needs a folder}; shift 2 ;;
      --no-start) start=false; shift ;;
      -h | --help) usage; exit 0 ;;
      *) fail "unknown option $1 (see --help)" ;;
    esac
  done
  [[ $(id -u) -eq 0 ]] || fail 'run me as root (sudo)'
  root=${root%/}
  local src flavour=full
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ -n $tarball ]]; then
    # A release tarball: one folder holding the app, its node_modules and RELEASE (version, arch, flavour).
    [[ -f $tarball ]] || fail "no release tarball at $tarball"
    unpacked=$(mktemp -d)
    trap 'rm -rf "$unpacked"' EXIT
    # RELEASE first, so a tarball for another box is refused before hundreds of MB are written.
    tar -xzf "$tarball" -C "$unpacked" --no-same-owner --wildcards '*/RELEASE' 2>/dev/null \
      || fail "$tarball is not a release from scripts/release.sh (no RELEASE file)"
    src=$(find "$unpacked" -mindepth 2 -maxdepth 2 -name RELEASE -type f -printf '%h\n')
    [[ -n $src && $src != *$'\n'* ]] || fail "$tarball is not a release from scripts/release.sh (not one folder holding a RELEASE file)"
    local arch machine
    # What RELEASE says is checked before it is used: it names the folder the release goes to.
    release_version=$(sed -n 's/^version=//p' "$src/RELEASE")
    arch=$(sed -n 's/^arch=//p' "$src/RELEASE")
    flavour=$(sed -n 's/^flavour=//p' "$src/RELEASE")
    valid_version "$release_version" || fail "$tarball: RELEASE gives no valid version (${release_version@Q})"
    [[ $arch == linux-x64 || $arch == linux-arm64 ]] || fail "$tarball: RELEASE gives no valid arch (${arch@Q}): linux-x64 or linux-arm64"
    [[ $flavour == full || $flavour == core ]] || fail "$tarball: RELEASE gives no valid flavour (${flavour@Q}): full or core"
    machine=$(uname -m)
    case $machine in x86_64) machine=linux-x64 ;; aarch64 | arm64) machine=linux-arm64 ;; esac
    [[ $arch == "$machine" ]] || fail "$tarball is for $arch; this box is $machine: build the release for it (scripts/release.sh $machine)"
    [[ $flavour == core ]] && $gpu && fail 'a --core release has no onnxruntime-node, so no GPU work: install the full release for --gpu'
    tar -xzf "$tarball" -C "$unpacked" --no-same-owner || fail "cannot unpack $tarball"
  fi
  [[ -x $src/node_modules/node/bin/node ]] || fail "$src has no node_modules: run npm ci there first (for this box's architecture)"
  "$src/node_modules/node/bin/node" -e 0 2>/dev/null \
    || fail "${tarball:-$src}: its Node runtime (node_modules/node/bin/node) does not run on this box (is it built for another machine?)"
  if [[ -n $tarball ]]; then
    # Every ELF file must be built for this box, or the agent fails later, when it loads one (a camera's decoder).
    local foreign
    foreign=$("$src/node_modules/node/bin/node" -e '
      const fs = require("node:fs"), path = require("node:path")
      const [root, machine] = [process.argv[1], Number(process.argv[2])], found = [], header = Buffer.alloc(20)
      const walk = (dir) => {
        for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
          const file = path.join(dir, entry.name)
          if (entry.isDirectory()) walk(file)
          if (!entry.isFile()) continue
          const fd = fs.openSync(file, "r")
          const read = fs.readSync(fd, header, 0, 20, 0)
          fs.closeSync(fd)
          if (read < 20 || header.readUInt32BE(0) !== 0x7f454c46) continue
          if ((header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18)) !== machine) found.push(path.relative(root, file))
        }
      }
      walk(root)
      process.stdout.write(found.sort().join(" "))' "$src" "$([[ $machine == linux-arm64 ]] && echo 183 || echo 62)") \
      || fail "cannot read $tarball's files"
    [[ -z $foreign ]] || fail "$tarball holds files built for another machine than this box ($machine): $foreign"
  fi
  local version
  version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$src/package.json")
  valid_version "$version" || fail "${tarball:-$src}: package.json gives no valid version (${version@Q})"
  [[ -z $tarball || $version == "$release_version" ]] || fail "$tarball: RELEASE says version $release_version but its package.json $version"
  # A core release is another build of the same version: it installs beside the full one, never over it.
  [[ $flavour == core ]] && version=$version-core
  # On a real box (not a staging --root) the service runs as its own user, in group video for cameras.
  local staged=false
  [[ $root != '' ]] && staged=true
  if ! $staged && ! getent passwd noodle >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/noodle --no-create-home --shell /usr/sbin/nologin noodle
    getent group video >/dev/null && usermod -a -G video noodle
    log 'created the system user noodle'
  fi
  # The agent's systemd notifications go through python3 (agent/main/systemd.ts).
  if ! $staged && ! command -v python3 >/dev/null; then
    apt-get install -y -qq python3-minimal >/dev/null || fail 'python3 is needed (apt-get install python3-minimal)'
  fi

  local changed=false
  local base=$root$prefix release=$root$prefix/releases/$version
  if [[ ! -d $release ]]; then
    log "installing $version into $prefix/releases/$version"
    rm -rf "$release.partial"  # what a failed install left
    mkdir -p "$release.partial"
    # Installed code is owned by whoever installs (root), never by the user who unpacked the release, and nobody
    # else may write it: the agent runs it, and root runs `noodle` too.
    for part in agent bin common identity media protocols runtime scripts systemd package.json package-lock.json .npmrc README.md RELEASE; do
      [[ -e $src/$part ]] && cp -a --no-preserve=ownership "$src/$part" "$release.partial/"
    done
    cp -a --no-preserve=ownership --reflink=auto "$src/node_modules" "$release.partial/"
    chmod -R go-w "$release.partial"
    mv "$release.partial" "$release"
    changed=true
  fi
  if $gpu && [[ ! -e $release/.gpu ]]; then
    # onnxruntime-node's own installer fetches the CUDA execution provider's libraries for this box.
    (cd "$release/node_modules/onnxruntime-node" && ONNXRUNTIME_NODE_INSTALL_CUDA=v12 "$release/node_modules/node/bin/node" script/install.js) \
      || fail 'installing the CUDA execution provider failed (is the network up?)'
    touch "$release/.gpu"
    changed=true
  fi
  # The new release is put in use last, once the config and unit are written: a failure before leaves the one in
  # use as it was.
  local node=$release/node_modules/node/bin/node

  # Config and swarm key: made once, kept across upgrades.
  local etc=$root/etc/noodle data=$root/var/lib/noodle
  mkdir -p "$etc" "$data"
  if [[ -n $swarm_key ]]; then
    install_file "$swarm_key" "$etc/swarm.key" 0640 && changed=true
  elif [[ ! -f $etc/swarm.key ]]; then
    # Through a file of its own: a key that failed half-way must not be kept as the box's key.
    if ! (umask 027 && "$release/bin/noodle" swarm-key >"$etc/swarm.key.partial"); then
      rm -f "$etc/swarm.key.partial"
      fail "cannot make a swarm key with $version's noodle swarm-key"
    fi
    mv "$etc/swarm.key.partial" "$etc/swarm.key"
    log "made a new swarm key: copy $etc/swarm.key to every other box and pass it there with --swarm-key"
    changed=true
  fi
  $staged || chown root:noodle "$etc/swarm.key"
  chmod 0640 "$etc/swarm.key"
  local settings
  settings=$(NAME=$name MQTT_URL=$mqtt_url BOOTSTRAP=${bootstrap[*]-} DATA=/var/lib/noodle KEY=/etc/noodle/swarm.key "$node" -e '
    const fs = require("node:fs")
    const file = process.argv[1]
    let config
    try {
      config = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : { dataDir: process.env.DATA, swarmKeyFile: process.env.KEY }
      if (typeof config !== "object" || config === null || Array.isArray(config)) throw new Error("not a JSON object")
    } catch (err) {
      process.stderr.write("noodle install: cannot read " + file + ": " + err.message + "\n")
      process.exit(1)
    }
    if (process.env.NAME) config.name = process.env.NAME
    if (process.env.BOOTSTRAP) config.bootstrap = process.env.BOOTSTRAP.split(" ")
    if (process.env.MQTT_URL) config.mqtt = { ...config.mqtt, url: process.env.MQTT_URL }
    process.stdout.write(JSON.stringify(config, null, 2) + "\n")' "$etc/config.json") || exit 1
  if [[ ! -f $etc/config.json ]] || [[ $settings != "$(cat "$etc/config.json")" ]]; then
    printf '%s\n' "$settings" >"$etc/config.json"
    chmod 0640 "$etc/config.json"
    $staged || chown root:noodle "$etc/config.json"
    changed=true
  fi
  $staged || chown noodle:noodle "$data"

  # The unit, pointed at this prefix; with --gpu, a drop-in that opens the GPU's devices.
  local unit_dir=$root/etc/systemd/system unit
  unit=$(mktemp)
  sed "s#/opt/noodle/bin/noodle#$prefix/bin/noodle#" "$src/systemd/noodle-agent.service" >"$unit"
  install_file "$unit" "$unit_dir/noodle-agent.service" 0644 && changed=true
  rm -f "$unit"
  if $gpu; then
    unit=$(mktemp)
    printf '%s\n' '# Written by install.sh --gpu: the GPU devices the CUDA execution provider needs.' '[Service]' \
      'DeviceAllow=/dev/nvidiactl rw' 'DeviceAllow=/dev/nvidia-uvm rw' 'DeviceAllow=char-nvidia-frontend rw' 'DeviceAllow=char-drm rw' >"$unit"
    install_file "$unit" "$unit_dir/noodle-agent.service.d/gpu.conf" 0644 && changed=true
    rm -f "$unit"
  fi

  local previous=''
  [[ -L $base/current ]] && previous=$(readlink "$base/current")
  if [[ $previous != "releases/$version" ]]; then
    ln -sfn "releases/$version" "$base/current"
    changed=true
  fi
  mkdir -p "$base/bin" "$root/usr/local/bin"
  [[ $(readlink "$base/bin/noodle" 2>/dev/null) == ../current/bin/noodle ]] || { ln -sfn ../current/bin/noodle "$base/bin/noodle"; changed=true; }
  [[ $(readlink "$root/usr/local/bin/noodle" 2>/dev/null) == "$prefix/bin/noodle" ]] || { ln -sfn "$prefix/bin/noodle" "$root/usr/local/bin/noodle"; changed=true; }

  if ! $changed; then
    log "nothing to change: $version is installed as configured"
    return 0
  fi
  local managed=true
  [[ -z ${NOODLE_INSTALL_SYSTEMCTL-} ]] && { $staged || [[ ! -d /run/systemd/system ]]; } && managed=false
  if ! $start || ! $managed; then
    log "installed $version into ${root:-/} (not started)"
    return 0
  fi
  "$SYSTEMCTL" daemon-reload
  "$SYSTEMCTL" enable noodle-agent.service >/dev/null
  "$SYSTEMCTL" restart noodle-agent.service
  # Health check: the new agent must answer on its socket in time, else the previous release comes back.
  local waited=0
  until "$base/bin/noodle" status --data-dir "$data" >/dev/null 2>&1; do
    waited=$((waited + 1))
    if ((waited > HEALTH_TIMEOUT_S)); then
      if [[ -n $previous && $previous != "releases/$version" ]]; then
        ln -sfn "$previous" "$base/current"
        "$SYSTEMCTL" restart noodle-agent.service
        fail "$version did not answer within ${HEALTH_TIMEOUT_S} s: rolled back to ${previous#releases/} (see journalctl -u noodle-agent)"
      fi
      fail "$version did not answer within ${HEALTH_TIMEOUT_S} s (see journalctl -u noodle-agent)"
    fi
    sleep 1
  done
  log "$version is running ($("$base/bin/noodle" status --json --data-dir "$data" | sed -n 's/.*"name": "\(.*\)",/\1/p'))"
}

main "$@"
