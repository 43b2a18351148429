import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { waitFor } from '../../scripts/agents.ts'
import { Testbed } from '../../scripts/testbed.ts'

const unavailable = Testbed.unavailableReason()
if (unavailable != null && process.env.CI === 'true') t.fail(`network namespaces are required in CI: ${unavailable}`)

t.test('the testbed cuts, partitions and heals links between its hosts', { skip: unavailable ?? false }, async (t) => {
  const bed = new Testbed().create(4)
  t.teardown(bed.destroy)
  // One ICMP echo with a short deadline: reachable or not, nothing else.
  // A ping every 200 ms until one is answered, for 5 s at most: the first packets after a port changes bridge can
  // be lost while the bridge learns where the hosts are (longer on a busy machine), which is no partition.
  const reaches = (from: number, to: number) =>
    spawnSync('ip', ['netns', 'exec', bed.hosts[from] as string, 'ping', '-c1', '-i0.2', '-w5', bed.address(to)], { stdio: 'ignore' }).status === 0

  t.ok(reaches(0, 3), 'all hosts reach each other on one switch')
  bed.cut(3)
  t.notOk(reaches(0, 3), 'a cut host is unreachable')
  bed.heal(3)
  t.ok(reaches(0, 3), 'and back once healed')

  bed.partition([[0, 1], [2, 3]])
  t.ok(reaches(0, 1), 'hosts of one side still reach each other')
  t.ok(reaches(2, 3), 'on both sides')
  t.notOk(reaches(1, 2), 'but not across the partition')
  bed.partition([[0], [1, 2, 3]])
  t.ok(reaches(1, 2), 'a new partition replaces the old one')
  t.notOk(reaches(0, 1))
  bed.healAll()
  t.ok(reaches(0, 2) && reaches(1, 3), 'healAll puts everyone back on one switch')

  const prefix = bed.prefix
  bed.destroy()
  const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout
  t.notMatch(left, new RegExp(prefix), 'destroy removes every namespace it made')
})

t.test('npm run testbed: hosts with agents, and nothing left behind after Ctrl-C', { skip: unavailable ?? false }, async (t) => {
  const child = spawn(process.execPath, [fileURLToPath(new URL('../../scripts/testbed.ts', import.meta.url)), '--hosts', '2'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  await waitFor('the testbed to come up', () => out.includes('Ctrl-C to tear down') || child.exitCode != null, 60_000)
  const prefix = /namespaces (\S+)-h0/.exec(out)?.[1] ?? ''
  const root = /data dirs under (\S+)/.exec(out)?.[1] ?? ''
  t.match(out, /coordinator: host-[01], term \d+/, `it says who coordinates: ${out}`)
  t.ok(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.includes(`${prefix}-h1`), 'its hosts exist meanwhile')
  child.kill('SIGINT')
  const [, signal] = await once(child, 'exit') as [number | null, NodeJS.Signals | null]
  t.equal(signal, 'SIGINT', 'it dies of the interrupt, as a program interrupted should')
  t.notMatch(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout, new RegExp(prefix), 'its namespaces are gone')
  t.notOk(existsSync(root), 'and its data dirs')
  t.equal(spawnSync('pgrep', ['-f', root]).status, 1, 'and no agent of it runs on')
})
