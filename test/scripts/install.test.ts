import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { commandExists, tempDir, waitFor } from '../helpers/agents.ts'
import { run, startInstalledAgent } from '../helpers/installed.ts'

const INSTALL = fileURLToPath(new URL('../../scripts/install.sh', import.meta.url))
const UNINSTALL = fileURLToPath(new URL('../../scripts/uninstall.sh', import.meta.url))
const REPO = fileURLToPath(new URL('../..', import.meta.url))

/** Every file and link under `dir` (node_modules left out: it is copied whole), with its mode and mtime. */
function snapshot (dir: string): string[] {
  const out: string[] = []
  const walk = (path: string): void => {
    for (const entry of readdirSync(path)) {
      if (entry === 'node_modules') continue
      const full = join(path, entry)
      const s = lstatSync(full)
      out.push(`${full} ${s.mode.toString(8)} ${s.mtimeMs}`)
      if (s.isDirectory()) walk(full)
    }
  }
  walk(dir)
  return out.sort()
}

t.test('the install scripts pass shellcheck', async (t) => {
  if (!commandExists('shellcheck')) {
    t.comment('skipped: shellcheck is not installed')
    return
  }
  const checked = await run('shellcheck', [INSTALL, UNINSTALL])
  t.equal(checked.code, 0, checked.stdout)
})

t.test('install into a staging root: the layout, a working agent, nothing changed the second time, uninstall', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async (t) => {
  // A short path: the agent's socket lies under it, and Unix socket paths are at most 107 bytes.
  const root = tempDir(t)
  const flags = ['--root', root, '--name', 'box-1', '--bootstrap', '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq']
  const first = await run(INSTALL, flags)
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, /installing 0\.1\.0 into \/opt\/noodle\/releases\/0\.1\.0/)
  t.match(first.stdout, /made a new swarm key: copy .*\/etc\/noodle\/swarm\.key to every other box/)
  t.equal(readlinkSync(join(root, 'opt/noodle/current')), 'releases/0.1.0')
  t.equal(readlinkSync(join(root, 'usr/local/bin/noodle')), '/opt/noodle/bin/noodle', 'noodle on PATH')
  t.equal(statSync(join(root, 'etc/noodle/swarm.key')).mode & 0o777, 0o640)
  t.same(JSON.parse(readFileSync(join(root, 'etc/noodle/config.json'), 'utf8')), {
    dataDir: '/var/lib/noodle', swarmKeyFile: '/etc/noodle/swarm.key', name: 'box-1', bootstrap: [flags[5]]
  })
  t.match(readFileSync(join(root, 'etc/systemd/system/noodle-agent.service'), 'utf8'), /\nExecStart=\/opt\/noodle\/bin\/noodle agent --config \/etc\/noodle\/config\.json\n/)
  t.ok(existsSync(join(root, 'opt/noodle/releases/0.1.0/node_modules/node/bin/node')), 'with its pinned Node runtime')

  // The installed command runs the installed agent, with the installed config and key.
  const { status, stop } = await startInstalledAgent(t, root)
  t.equal(status.name, 'box-1', 'the installed agent answers noodle status, with the configured name')
  await stop()
  const dataDir = join(root, 'var/lib/noodle')

  const before = snapshot(root)
  const again = await run(INSTALL, flags)
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /nothing to change: 0\.1\.0 is installed as configured/)
  t.same(snapshot(root), before, 'running the installer again changes nothing')

  const renamed = await run(INSTALL, ['--root', root, '--name', 'box-2'])
  t.equal(renamed.code, 0, renamed.stderr)
  t.match(JSON.parse(readFileSync(join(root, 'etc/noodle/config.json'), 'utf8')), { name: 'box-2', bootstrap: [flags[5]] }, 'a flag given again updates its key, the rest stays')

  const removed = await run(UNINSTALL, ['--root', root])
  t.equal(removed.code, 0, removed.stderr)
  t.notOk(existsSync(join(root, 'opt/noodle')), 'the app is gone')
  t.notOk(existsSync(join(root, 'etc/systemd/system/noodle-agent.service')), 'the unit too')
  t.notOk(existsSync(join(root, 'usr/local/bin/noodle')))
  t.ok(existsSync(join(root, 'etc/noodle/swarm.key')) && existsSync(join(dataDir, 'identity.key')), 'the config and the data stay')
  const purged = await run(UNINSTALL, ['--root', root, '--purge'])
  t.equal(purged.code, 0, purged.stderr)
  t.notOk(existsSync(join(root, 'etc/noodle')) || existsSync(dataDir), '--purge removes them too')
})

/** A release of this app as `version`, its node_modules linked, not copied; a broken one cannot even start. */
function release (dir: string, version: string, broken = false): string {
  for (const part of ['agent', 'bin', 'common', 'identity', 'media', 'protocols', 'runtime', 'scripts', 'systemd', 'package.json']) cpSync(join(REPO, part), join(dir, part), { recursive: true })
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'))
  writeFileSync(join(dir, 'package.json'), readFileSync(join(dir, 'package.json'), 'utf8').replace(/\n {2}"version": "[^"]+",\n/, `\n  "version": "${version}",\n`))
  if (broken) writeFileSync(join(dir, 'bin/noodle'), '#!/bin/sh\nexit 1\n')
  return join(dir, 'scripts/install.sh')
}

t.test('installed code belongs to root and nobody else may write it, whoever unpacked the release', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async (t) => {
  const root = tempDir(t)
  const unpacked = join(root, 'unpacked')
  const install = release(unpacked, '3.0.0')
  // As a tarball unpacked by another user leaves it: their files, one of them writable by all.
  await run('chown', ['-R', '--no-dereference', '65534:65534', unpacked])
  chmodSync(join(unpacked, 'agent/cli/cli.ts'), 0o666)
  const installed = await run(install, ['--root', root, '--name', 'box-1'])
  t.equal(installed.code, 0, installed.stderr)
  const releaseDir = join(root, 'opt/noodle/releases/3.0.0')
  const offending = snapshot(releaseDir).map((line) => line.split(' ')[0] as string).filter((file) => {
    const s = lstatSync(file)
    return !s.isSymbolicLink() && (s.uid !== 0 || (s.mode & 0o022) !== 0)
  })
  t.same(offending, [], 'every installed file is root\'s and writable by root alone')
  t.equal(statSync(join(releaseDir, 'agent/cli/cli.ts')).mode & 0o777, 0o644)
})

t.test('an upgrade that does not come up is rolled back to the release before it', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async (t) => {
  const root = tempDir(t)
  // A stand-in for systemctl: restart stops the agent it started last and starts the current release's.
  const systemctl = join(root, 'systemctl')
  writeFileSync(systemctl, `#!/bin/bash
set -u
[[ $1 == restart ]] || exit 0
pidfile=${root}/agent.pid
if [[ -f $pidfile ]]; then kill "$(cat "$pidfile")" 2>/dev/null; while kill -0 "$(cat "$pidfile")" 2>/dev/null; do sleep 0.1; done; fi
${root}/opt/noodle/bin/noodle agent --config ${root}/etc/noodle/config.json --data-dir ${root}/var/lib/noodle --swarm-key ${root}/etc/noodle/swarm.key \\
  --listen /ip4/127.0.0.1/tcp/0 --no-mdns --log-level warn >/dev/null 2>&1 &
echo $! >"$pidfile"
`)
  chmodSync(systemctl, 0o755)
  t.teardown(() => { try { process.kill(Number(readFileSync(join(root, 'agent.pid'), 'utf8')), 'SIGKILL') } catch {} })
  const env = { NOODLE_INSTALL_SYSTEMCTL: systemctl, NOODLE_INSTALL_HEALTH_TIMEOUT_S: '20' }
  const version = async () => JSON.parse((await run(join(root, 'opt/noodle/bin/noodle'), ['status', '--json', '--data-dir', join(root, 'var/lib/noodle')])).stdout).version as string

  const first = await run(release(tempDir(t), '1.0.0'), ['--root', root, '--name', 'box-1'], env)
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, /1\.0\.0 is running \(box-1\)/, 'started and answering')
  const second = await run(release(tempDir(t), '1.1.0'), ['--root', root], env)
  t.equal(second.code, 0, second.stderr)
  t.equal(await version(), '1.1.0', 'upgraded')
  const broken = await run(release(tempDir(t), '1.2.0', true), ['--root', root], env)
  t.equal(broken.code, 1)
  t.match(broken.stderr, /1\.2\.0 did not answer within 20 s: rolled back to 1\.1\.0/)
  t.equal(readlinkSync(join(root, 'opt/noodle/current')), 'releases/1.1.0')
  t.equal(await waitFor('the previous release to answer again', async () => await version().catch(() => undefined), 20_000), '1.1.0', 'the previous release runs again')
  t.same(JSON.parse(readFileSync(join(root, 'etc/noodle/config.json'), 'utf8')).name, 'box-1', 'upgrades keep the config')
})

/** A gzipped tarball of `entries`, written by Python's tarfile so that it can hold what GNU tar would not write. */
async function tarball (file: string, entries: Array<{ name: string, data?: string | Buffer, link?: string, type?: 'file' | 'symlink' | 'hardlink' }>): Promise<string> {
  const spec = entries.map((e) => ({ ...e, data: Buffer.from(e.data ?? '').toString('base64') }))
  writeFileSync(`${file}.json`, JSON.stringify(spec))
  const made = await run('python3', ['-c', `
import base64, io, json, sys, tarfile
with tarfile.open(sys.argv[1], 'w:gz', format=tarfile.GNU_FORMAT) as tf:
    for e in json.load(open(sys.argv[1] + '.json')):
        ti = tarfile.TarInfo(e['name']); ti.mode = 0o755
        kind = e.get('type', 'file')
        if kind == 'file':
            data = base64.b64decode(e['data']); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
        else:
            ti.type = tarfile.SYMTYPE if kind == 'symlink' else tarfile.LNKTYPE; ti.linkname = e['link']; tf.addfile(ti)
`, file])
  if (made.code !== 0) throw new Error(made.stderr)
  return file
}

t.test('install.sh --release: a hostile or broken tarball is refused with its reason, nothing changes, and the release in use stays', { skip: process.getuid?.() !== 0 || !commandExists('python3') ? 'needs root and python3' : false }, async (t) => {
  const root = tempDir(t)
  const work = tempDir(t)
  const first = await run(release(tempDir(t), '1.0.0'), ['--root', root, '--name', 'box-1'])
  t.equal(first.code, 0, first.stderr)
  const arch = process.arch === 'arm64' ? 'linux-arm64' : 'linux-x64'
  // An ELF header for the other machine (AArch64 on x86-64, x86-64 on AArch64).
  const foreignElf = Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, ...Array(11).fill(0), process.arch === 'arm64' ? 62 : 183, 0, 2, 0, ...Array(44).fill(0)])
  /** A release of version 2.0.0 for this box; `change` replaces or adds entries by name. */
  const make = (name: string, change: Record<string, { data?: string | Buffer, link?: string, type?: 'file' | 'symlink' | 'hardlink' }> = {}, extra: Array<{ name: string, data?: string, link?: string, type?: 'file' | 'symlink' | 'hardlink' }> = []): Promise<string> => {
    const base: Record<string, { data?: string | Buffer, link?: string, type?: 'file' | 'symlink' | 'hardlink' }> = {
      'r/RELEASE': { data: `version=2.0.0\narch=${arch}\nflavour=full\n` },
      'r/package.json': { data: '{\n  "name": "noodle",\n  "version": "2.0.0",\n  "type": "module"\n}\n' },
      'r/bin/noodle': { data: readFileSync(join(REPO, 'bin/noodle')) },
      'r/systemd/noodle-agent.service': { data: readFileSync(join(REPO, 'systemd/noodle-agent.service')) },
      'r/node_modules/node/bin/node': { type: 'symlink', link: join(REPO, 'node_modules/node/bin/node') },
      ...change
    }
    return tarball(join(work, `${name}.tar.gz`), [...Object.entries(base).map(([entry, e]) => ({ name: entry, ...e })), ...extra])
  }
  const key = join(root, 'etc/noodle/swarm.key')
  const refused: Array<[string, Promise<string>, RegExp]> = [
    ['a version that climbs out of releases/', make('climb', { 'r/RELEASE': { data: `version=../../../escaped\narch=${arch}\nflavour=full\n` }, 'r/package.json': { data: '{\n  "version": "../../../escaped",\n}\n' } }),
      /climb\.tar\.gz: RELEASE gives no valid version \('\.\.\/\.\.\/\.\.\/escaped'\)\n$/],
    ['package.json\'s version climbing out, RELEASE\'s fine', make('climb2', { 'r/package.json': { data: '{\n  "version": "../../../escaped",\n}\n' } }),
      /climb2\.tar\.gz: package\.json gives no valid version \('\.\.\/\.\.\/\.\.\/escaped'\)\n$/],
    ['two versions', make('two', { 'r/RELEASE': { data: `version=2.0.0\nversion=3.0.0\narch=${arch}\nflavour=full\n` } }), /RELEASE gives no valid version \(\$'2\.0\.0\\n3\.0\.0'\)\n$/],
    ['RELEASE and package.json disagree', make('disagree', { 'r/package.json': { data: '{\n  "version": "2.0.1",\n}\n' } }), /RELEASE says version 2\.0\.0 but its package\.json 2\.0\.1/],
    ['an unknown flavour', make('flavour', { 'r/RELEASE': { data: `version=2.0.0\narch=${arch}\nflavour=$(touch ${root}/pwned)\n` } }), /RELEASE gives no valid flavour \('\$\(touch .*\/pwned\)'\): full or core\n$/],
    ['a Node for another machine', make('elf', { 'r/node_modules/node/bin/node': { data: foreignElf } }), /elf\.tar\.gz: its Node runtime \(node_modules\/node\/bin\/node\) does not run on this box \(is it built for another machine\?\)\n$/],
    ['an addon for another machine', make('addon', {}, [{ name: 'r/node_modules/x/addon.node', data: foreignElf.toString('latin1') }]), /addon\.tar\.gz holds files built for another machine than this box \(linux-(x64|arm64)\): node_modules\/x\/addon\.node\n$/],
    ['RELEASE a link to a file outside', make('link', { 'r/RELEASE': { type: 'symlink', link: '/etc/hostname' } }), /not a release from scripts\/release\.sh \(not one folder holding a RELEASE file\)/],
    ['two folders with a RELEASE each', make('twofolders', {}, [{ name: 's/RELEASE', data: `version=2.0.0\narch=${arch}\nflavour=full\n` }]), /not a release from scripts\/release\.sh \(not one folder holding a RELEASE file\)/],
    ['an unknown arch', make('arch', { 'r/RELEASE': { data: 'version=2.0.0\narch=linux-x64\narch=linux-arm64\nflavour=full\n' } }), /RELEASE gives no valid arch \(\$'linux-x64\\nlinux-arm64'\): linux-x64 or linux-arm64\n$/],
    ['entries that climb out or are absolute', make('dotdot', {}, [{ name: 'r/../../../escaped', data: 'x' }, { name: `${root}/escaped-abs`, data: 'x' }]), /cannot unpack/],
    ['a link out, then a file through it', make('symlink', {}, [{ name: 'r/out', type: 'symlink', link: root }, { name: 'r/out/escaped', data: 'x' }]), /cannot unpack/],
    ['a hard link to a file outside', make('hardlink', {}, [{ name: 'r/h', type: 'hardlink', link: join(root, 'etc/noodle/config.json') }, { name: 'r/h', data: 'overwritten' }]), /cannot unpack/]
  ]
  const garbage = join(work, 'garbage.tar.gz')
  writeFileSync(garbage, Buffer.alloc(1 << 20, 0xa5))
  refused.push(['a file of garbage', Promise.resolve(garbage), /garbage\.tar\.gz is not a release from scripts\/release\.sh/])
  for (const [what, made, reason] of refused) {
    const file = await made
    const before = snapshot(root)
    const answer = await run(INSTALL, ['--release', file, '--root', root, '--swarm-key', key])
    t.equal(answer.code, 1, `${what}: refused`)
    t.match(answer.stderr, reason, `${what}: ${answer.stderr}`)
    t.same(snapshot(root), before, `${what}: nothing changed`)
    t.same(readdirSync(join(root, 'opt/noodle/releases')), ['1.0.0'], what)
  }
  t.same(readdirSync(root).sort(), ['etc', 'opt', 'usr', 'var'], 'nothing written beside the install')

  // A config that cannot be read stops the upgrade with its name, before the new release is put in use.
  const config = join(root, 'etc/noodle/config.json')
  const good = readFileSync(config, 'utf8')
  writeFileSync(config, '{ "name": ')
  const valid = await make('valid')
  const unreadable = await run(INSTALL, ['--release', valid, '--root', root, '--swarm-key', key])
  t.equal(unreadable.code, 1)
  t.match(unreadable.stderr, new RegExp(`cannot read ${config}: `))
  t.equal(readlinkSync(join(root, 'opt/noodle/current')), 'releases/1.0.0', 'the release in use stays')
  // A partial copy left by a failed install does not leak into the next one.
  writeFileSync(config, good)
  rmSync(join(root, 'opt/noodle/releases/2.0.0'), { recursive: true, force: true })
  mkdirSync(join(root, 'opt/noodle/releases/2.0.0.partial'), { recursive: true })
  writeFileSync(join(root, 'opt/noodle/releases/2.0.0.partial/stray'), 'x')
  const installed = await run(INSTALL, ['--release', valid, '--root', root, '--swarm-key', key])
  t.equal(installed.code, 0, installed.stderr)
  t.equal(readlinkSync(join(root, 'opt/noodle/current')), 'releases/2.0.0', 'the tarball the refused ones were made from installs')
  t.notOk(existsSync(join(root, 'opt/noodle/releases/2.0.0/stray')), 'nothing from an earlier failed copy')

  // A swarm key that cannot be made is not left behind half-made, to be kept by every later install.
  rmSync(key)
  const nokey = await make('nokey', {
    'r/RELEASE': { data: `version=2.0.1\narch=${arch}\nflavour=full\n` },
    'r/package.json': { data: '{\n  "version": "2.0.1",\n}\n' },
    'r/bin/noodle': { data: '#!/bin/sh\necho half\nexit 3\n' }
  })
  const failed = await run(INSTALL, ['--release', nokey, '--root', root])
  t.equal(failed.code, 1)
  t.match(failed.stderr, /cannot make a swarm key with 2\.0\.1's noodle swarm-key\n$/)
  t.same([existsSync(key), existsSync(`${key}.partial`)], [false, false], 'no key, whole or half')
  t.equal(readlinkSync(join(root, 'opt/noodle/current')), 'releases/2.0.0', 'the release in use stays')
})
