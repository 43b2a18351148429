import { execFile, spawn } from 'node:child_process'
import { chmodSync, cpSync, existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { commandExists, tempDir, waitFor } from '../helpers/agents.ts'

const INSTALL = fileURLToPath(new URL('../../scripts/install.sh', import.meta.url))
const UNINSTALL = fileURLToPath(new URL('../../scripts/uninstall.sh', import.meta.url))
const REPO = fileURLToPath(new URL('../..', import.meta.url))

function run (file: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 300_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

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
  const noodle = join(root, 'opt/noodle/bin/noodle')
  const dataDir = join(root, 'var/lib/noodle')
  const agent = spawn(noodle, ['agent', '--config', join(root, 'etc/noodle/config.json'), '--data-dir', dataDir, '--swarm-key', join(root, 'etc/noodle/swarm.key'),
    '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--log-level', 'warn'], { stdio: 'ignore' })
  t.teardown(() => { agent.kill('SIGKILL') })
  const status = await waitFor('noodle status to answer', async () => {
    const answer = await run(noodle, ['status', '--json', '--data-dir', dataDir])
    return answer.code === 0 && JSON.parse(answer.stdout) as { name: string }
  }, 30_000)
  t.equal(status.name, 'box-1', 'the installed agent answers noodle status, with the configured name')
  agent.kill('SIGTERM')
  await new Promise((resolve) => agent.once('exit', resolve))

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
