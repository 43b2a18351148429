#!/usr/bin/env node
/**
 * Failure detection and election benchmark on the namespace testbed, production timings. For N hosts (5 and 16
 * by default), over --trials trials each, it prints p50/p95 of:
 *   - dead after SIGKILL / after a cut link (no FIN): until every survivor lists the member dead
 *   - new coordinator after the coordinator is SIGKILLed / cut off: until every survivor agrees on one
 *   - one coordinator after a heal: from healing (a cut coordinator's link; a half|half partition) until all agree
 * Times come from the agents' own log lines (one clock: all run on this machine), not from polling.
 * Baselines in the same run, same testbed (N=5 only, as the issue's anchors): Serf (SWIM + Lifeguard, failure
 * detection) and etcd 3.4 (Raft, default timings: a new leader), with the ratios noodle/baseline at p50 and p95.
 *
 *   node bench/election.ts [--sizes 5,16] [--trials 10] [--baseline-trials 5] [--parts noodle,serf,etcd]
 *                          [--connections K --degree D]
 *
 * --connections K (with --degree D) runs the agents as a partial mesh (mesh.connections K, gossip.degree D; see
 * docs/scale.md), to check it keeps the targets the full mesh keeps.
 *
 * Needs root (namespaces); serf and etcd from Debian (apt-get install serf etcd-server), else those are skipped.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { agreedCoordinator, allSee, waitFor, waitForAgreement } from '../scripts/agents.ts'
import type { AgentProcess, Agreement } from '../scripts/agents.ts'
import { AgentBed, Testbed, onExitOrSignal } from '../scripts/testbed.ts'
import { commandExists, logLines, percentile, serfMembers, startSerf } from './lib.ts'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '5,16' },
    trials: { type: 'string', default: '10' },
    'baseline-trials': { type: 'string', default: '5' },
    parts: { type: 'string', default: 'noodle,serf,etcd' },
    connections: { type: 'string', default: '0' },
    degree: { type: 'string', default: '0' }
  }
})
const connections = Number(values.connections)
const degree = Number(values.degree)
if (!Number.isInteger(connections) || connections < 0 || !Number.isInteger(degree) || degree < 0) throw new Error('--connections and --degree take whole numbers ≥ 0')
const meshConfig = connections === 0 ? undefined : () => ({ mesh: { connections }, gossip: { degree } })
const sizes = (values.sizes ?? '').split(',').map(Number)
// Baseline processes die with the benchmark, however it ends (the testbeds remove their namespaces likewise).
const baselineProcs = new Set<ChildProcess>()
onExitOrSignal(() => { for (const p of baselineProcs) p.kill('SIGKILL') })
const track = (child: ChildProcess): ChildProcess => {
  baselineProcs.add(child)
  child.once('exit', () => baselineProcs.delete(child))
  return child
}
const trials = Number(values.trials)
const baselineTrials = Number(values['baseline-trials'])
const parts = new Set((values.parts ?? '').split(','))

type Series = Record<string, number[]>
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)] as T
const line = (n: number, label: string, xs: number[]) =>
  `N=${String(n).padStart(2)} ${label.padEnd(48)} p50 ${fmt(percentile(xs, 50))}  p95 ${fmt(percentile(xs, 95))}  (n=${xs.length})`
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`.padStart(7)

/** Why members were found dead, by the reason their observers logged (refused connection, unanswered pings…). */
const deathReasons = new Map<string, number>()

/** When `observer` logged `peer` dead, at or after `since` (and tallies why). */
function deadAt (observer: AgentProcess, peer: string, since: number): number {
  const found = logLines(observer).find((l) => l.time >= since && l.peer === peer && l.to === 'dead')
  if (found == null) return NaN
  const reason = (found.reason ?? '?').replace(/\d+/g, 'N')
  deathReasons.set(reason, (deathReasons.get(reason) ?? 0) + 1)
  return found.time
}

/** When `observer` last took `coordinator` at `term` as its coordinator, or `since` if it had before then. */
function adoptedAt (observer: AgentProcess, coordinator: string, term: number, since: number): number {
  const taken = logLines(observer).filter((l) => l.coordinator === coordinator && l.term === term && l.msg.startsWith('coordinator is'))
  const last = taken.at(-1)?.time
  return last == null ? NaN : Math.max(last, since)
}

const latest = (xs: number[]) => Math.max(...xs)

const agreement = (agents: AgentProcess[], accept: (a: Agreement) => boolean) => waitForAgreement('agreement', agents, accept, 60_000)

/** Every agent alive to every other, and one coordinator that stays put for 1.5 s (a restarted agent may rank best). */
async function settle (bed: AgentBed): Promise<{ coordinator: string, term: number }> {
  for (;;) {
    await waitFor('all alive', () => allSee(bed.live, bed.live, 'alive'), 60_000, 100)
    const agreed = await agreement(bed.live, () => true)
    await sleep(1_500)
    const still = await agreedCoordinator(bed.live)
    if (still?.coordinator === agreed.coordinator && still.term === agreed.term) return agreed
  }
}

async function benchNoodle (n: number): Promise<Series> {
  const s: Series = { deadKill: [], deadCut: [], electKill: [], electCut: [], healCut: [], healSplit: [] }
  const bed = await AgentBed.start({ hosts: n, logLevel: 'info', config: meshConfig })
  try {
    for (let trial = 0; trial < trials; trial++) {
      const before = Object.fromEntries(Object.entries(s).map(([k, xs]) => [k, xs.length]))
      // A member is SIGKILLed.
      let { coordinator } = await settle(bed)
      let victim = pick(bed.agents.map((_, i) => i).filter((i) => bed.agents[i]?.peerId !== coordinator))
      let peer = (bed.agents[victim] as AgentProcess).peerId
      let t0 = Date.now()
      await bed.kill(victim)
      let others = bed.live
      await waitFor('the killed member dead everywhere', () => allSee(others, [bed.agents[victim] as AgentProcess], 'dead'), 30_000, 100)
      s.deadKill?.push(latest(others.map((o) => deadAt(o, peer, t0))) - t0)
      await bed.restart(victim)

      // The coordinator is SIGKILLed.
      ;({ coordinator } = await settle(bed))
      victim = bed.indexOf(coordinator)
      t0 = Date.now()
      await bed.kill(victim)
      others = bed.live
      let next = await agreement(others, (a) => a.coordinator !== coordinator)
      await waitFor('the killed coordinator dead everywhere', () => allSee(others, [bed.agents[victim] as AgentProcess], 'dead'), 30_000, 100)
      s.deadKill?.push(latest(others.map((o) => deadAt(o, coordinator, t0))) - t0)
      s.electKill?.push(latest(others.map((o) => adoptedAt(o, next.coordinator, next.term, t0))) - t0)
      await bed.restart(victim)

      // A member's link is cut.
      ;({ coordinator } = await settle(bed))
      victim = pick(bed.agents.map((_, i) => i).filter((i) => bed.agents[i]?.peerId !== coordinator))
      peer = (bed.agents[victim] as AgentProcess).peerId
      others = bed.agents.filter((_, i) => i !== victim)
      t0 = Date.now()
      bed.cut(victim)
      await waitFor('the cut member dead everywhere', () => allSee(others, [bed.agents[victim] as AgentProcess], 'dead'), 30_000, 100)
      s.deadCut?.push(latest(others.map((o) => deadAt(o, peer, t0))) - t0)
      bed.heal(victim)

      // The coordinator's link is cut, then healed.
      ;({ coordinator } = await settle(bed))
      victim = bed.indexOf(coordinator)
      others = bed.agents.filter((_, i) => i !== victim)
      t0 = Date.now()
      bed.cut(victim)
      next = await agreement(others, (a) => a.coordinator !== coordinator)
      await waitFor('the cut coordinator dead everywhere', () => allSee(others, [bed.agents[victim] as AgentProcess], 'dead'), 30_000, 100)
      s.deadCut?.push(latest(others.map((o) => deadAt(o, coordinator, t0))) - t0)
      s.electCut?.push(latest(others.map((o) => adoptedAt(o, next.coordinator, next.term, t0))) - t0)
      await sleep(500)
      let healed = Date.now()
      bed.heal(victim)
      let one = await agreement(bed.agents, () => true)
      s.healCut?.push(latest(bed.agents.map((o) => adoptedAt(o, one.coordinator, one.term, healed))) - healed)

      // Half | half, each side with its own coordinator, then healed.
      await settle(bed)
      const half = Math.floor(n / 2)
      const left = bed.agents.slice(0, half)
      const right = bed.agents.slice(half)
      bed.partition([left.map((_, i) => i), right.map((_, i) => i + half)])
      const sides = await Promise.all([left, right].map((side) => agreement(side, (a) => side.some((x) => x.peerId === a.coordinator))))
      await sleep(500)
      healed = Date.now()
      bed.healAll()
      one = await agreement(bed.agents, (a) => a.term >= Math.max(...sides.map((x) => x.term)))
      s.healSplit?.push(latest(bed.agents.map((o) => adoptedAt(o, one.coordinator, one.term, healed))) - healed)
      process.stderr.write(`  N=${n} trial ${trial + 1}/${trials}: ${Object.entries(s).map(([k, xs]) => `${k} ${xs.slice(before[k]).map((x) => (x / 1000).toFixed(2)).join('/')}`).join(', ')}\n`)
    }
  } finally {
    await bed.destroy()
  }
  return s
}

/** Serf: SIGKILL and cut of a member, until every other member lists it failed (polled every 100 ms). */
async function benchSerf (n: number): Promise<Series> {
  const s: Series = { deadKill: [], deadCut: [] }
  const bed = new Testbed().create(n)
  const procs: Array<ChildProcess | undefined> = []
  const allStatus = async (hosts: number[], name: string, status: string) =>
    (await Promise.all(hosts.map((i) => serfMembers(bed, i)))).every((ms) => ms.find((m) => m.name === name)?.status === status)
  const everyone = bed.hosts.map((_, i) => i)
  try {
    for (const i of everyone) procs[i] = track(startSerf(bed, i))
    for (let trial = 0; trial < baselineTrials; trial++) {
      for (const how of ['kill', 'cut'] as const) {
        await waitFor('serf members all alive', async () => (await Promise.all(everyone.map((i) => serfMembers(bed, i))))
          .every((ms) => ms.filter((m) => m.status === 'alive').length === n), 60_000, 200)
        await sleep(1_000)
        const victim = 1 + Math.floor(Math.random() * (n - 1))
        const others = everyone.filter((i) => i !== victim)
        const t0 = Date.now()
        if (how === 'kill') procs[victim]?.kill('SIGKILL')
        else bed.cut(victim)
        await waitFor('serf to mark it failed', () => allStatus(others, `s${victim}`, 'failed'), 60_000, 100)
        ;(how === 'kill' ? s.deadKill : s.deadCut)?.push(Date.now() - t0)
        if (how === 'kill') procs[victim] = track(startSerf(bed, victim))
        else bed.heal(victim)
      }
      process.stderr.write(`  serf N=${n} trial ${trial + 1}/${baselineTrials} done\n`)
    }
  } finally {
    for (const p of procs) p?.kill('SIGKILL')
    bed.destroy()
  }
  return s
}

/** etcd 3.4, default timings: SIGKILL and cut of the leader, until every other member logged the new leader. */
async function benchEtcd (n: number): Promise<Series> {
  const s: Series = { electKill: [], electCut: [] }
  const bed = new Testbed().create(n)
  const root = mkdtempSync(join(tmpdir(), 'ne-'))
  const logs: string[] = bed.hosts.map(() => '')
  const procs: Array<ChildProcess | undefined> = []
  const cluster = bed.hosts.map((_, i) => `e${i}=http://${bed.address(i)}:2380`).join(',')
  const start = (i: number) => {
    const url = (port: number) => `http://${bed.address(i)}:${port}`
    const child = bed.spawn(i, 'etcd', ['--name', `e${i}`, '--data-dir', join(root, `e${i}`),
      '--listen-peer-urls', url(2380), '--initial-advertise-peer-urls', url(2380),
      '--listen-client-urls', url(2379), '--advertise-client-urls', url(2379),
      '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--logger', 'zap', '--log-outputs', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr?.on('data', (d: Buffer) => { logs[i] += d.toString() })
    procs[i] = track(child)
  }
  /** Each member's leader changes: when, who, which term. */
  const elections = (i: number) => (logs[i] ?? '').split('\n').flatMap((l) => {
    // raft logs "elected leader L" after a spell without one, "changed leader from K to L" when it never had none.
    const m = /"ts":"([^"]+)".*(?:elected leader|changed leader from [0-9a-f]+ to) ([0-9a-f]+) at term (\d+)/.exec(l)
    return m == null ? [] : [{ at: Date.parse(m[1] as string), leader: m[2] as string, term: Number(m[3]) }]
  })
  const memberId = (i: number) => /"local-member-id":"([0-9a-f]+)"/.exec(logs[i] ?? '')?.[1]
  const currentLeader = () => {
    const seen = bed.hosts.map((_, i) => elections(i).at(-1))
    const top = seen.reduce((a, b) => (b != null && (a == null || b.term > a.term) ? b : a), undefined)
    return top != null && seen.every((x) => x?.term === top.term) ? top : undefined
  }
  try {
    for (const i of bed.hosts.keys()) start(i)
    for (let trial = 0; trial < baselineTrials; trial++) {
      for (const how of ['kill', 'cut'] as const) {
        const before = await waitFor('etcd to agree on a leader', currentLeader, 60_000, 100)
        await sleep(1_000)
        const victim = bed.hosts.findIndex((_, i) => memberId(i) === before.leader)
        const others = [...bed.hosts.keys()].filter((i) => i !== victim)
        const t0 = Date.now()
        if (how === 'kill') procs[victim]?.kill('SIGKILL')
        else bed.cut(victim)
        const times = await waitFor('every other member to log a new leader', () => {
          const firsts = others.map((i) => elections(i).find((e) => e.at >= t0 && e.term > before.term)?.at)
          return firsts.every((x) => x != null) ? firsts as number[] : undefined
        }, 60_000, 100)
        ;(how === 'kill' ? s.electKill : s.electCut)?.push(latest(times) - t0)
        if (how === 'kill') start(victim)
        else bed.heal(victim)
      }
      process.stderr.write(`  etcd N=${n} trial ${trial + 1}/${baselineTrials} done\n`)
    }
  } finally {
    for (const p of procs) p?.kill('SIGKILL')
    bed.destroy()
    rmSync(root, { recursive: true, force: true })
  }
  return s
}

const unavailable = Testbed.unavailableReason()
if (unavailable != null) {
  console.log(`election benchmark: skipped (${unavailable})`)
  process.exit(0)
}
const LABELS: Record<string, string> = {
  deadKill: 'dead after SIGKILL',
  deadCut: 'dead after a cut link',
  electKill: 'new coordinator after SIGKILL',
  electCut: 'new coordinator after a cut link',
  healCut: 'one coordinator after heal (1|N-1)',
  healSplit: 'one coordinator after heal (half|half)'
}
console.log(`election benchmark: sizes ${sizes.join(', ')}, ${trials} trials (baselines ${baselineTrials}), production timings${connections === 0 ? '' : `, partial mesh (mesh.connections ${connections}, gossip.degree ${degree})`}`)
for (const n of sizes) {
  const noodle = parts.has('noodle') ? await benchNoodle(n) : {}
  for (const [key, xs] of Object.entries(noodle)) console.log(line(n, `noodle ${LABELS[key] ?? key}`, xs))
  if (deathReasons.size > 0) console.log(`N=${String(n).padStart(2)} noodle deaths by reason: ${[...deathReasons].map(([r, k]) => `${k}× "${r}"`).join(', ')}`)
  deathReasons.clear()
  if (n !== 5) continue
  const serf = parts.has('serf') && commandExists('serf') ? await benchSerf(n) : {}
  for (const [key, xs] of Object.entries(serf)) console.log(line(n, `serf   ${LABELS[key] ?? key}`, xs))
  const etcd = parts.has('etcd') && commandExists('etcd') ? await benchEtcd(n) : {}
  for (const [key, xs] of Object.entries(etcd)) console.log(line(n, `etcd   ${(LABELS[key] ?? key).replace('coordinator', 'leader')}`, xs))
  const ratio = (ours: number[] | undefined, theirs: number[] | undefined, what: string) =>
    ours != null && theirs != null && ours.length > 0 && theirs.length > 0
      ? `${what} p50 ×${(percentile(ours, 50) / percentile(theirs, 50)).toFixed(2)} p95 ×${(percentile(ours, 95) / percentile(theirs, 95)).toFixed(2)}`
      : null
  const ratios = [
    ratio(noodle.deadKill, serf.deadKill, 'dead/SIGKILL vs serf'),
    ratio(noodle.deadCut, serf.deadCut, 'dead/cut vs serf'),
    ratio(noodle.electKill, etcd.electKill, 'new coordinator/SIGKILL vs etcd'),
    ratio(noodle.electCut, etcd.electCut, 'new coordinator/cut vs etcd')
  ].filter((r) => r != null)
  if (ratios.length > 0) console.log(`N=${String(n).padStart(2)} ratio noodle/baseline: ${ratios.join('; ')}`)
}
