import { execFile, execFileSync, spawn } from 'node:child_process'
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { tempDir, waitFor } from '../helpers/agents.ts'

const INSTALL = fileURLToPath(new URL('../../scripts/install.sh', import.meta.url))
const UNINSTALL = fileURLToPath(new URL('../../scripts/uninstall.sh', import.meta.url))

function run (file: string, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 300_000 }, (err, stdout, stderr) => {
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
  try {
    execFileSync('shellcheck', ['--version'], { stdio: 'ignore' })
  } catch {
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
