import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'

const SIMULATE = fileURLToPath(new URL('../../bench/simulate.ts', import.meta.url))

interface Run {
  n: number
  mode: string
  deadFirst: Array<number | null>
  deadAll: Array<number | null>
  electionAfterDeath: number[]
  electionAfterHeal: number[]
  falseDeaths: number
  healDeaths: number
  bytesPerMemberS: number
  maxConnections: number
}

/** bench/simulate.ts at a tiny size, its results as JSON (one line per size; the header line skipped). */
async function simulate (args: string[]): Promise<Run[]> {
  const { stdout } = await promisify(execFile)(process.execPath, [SIMULATE, '--json', '--steady-s', '3', '--deaths', '3', '--coordinator-deaths', '1', '--partitions', '1', ...args])
  return stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Run)
}

t.test('full mesh without loss: every death found by every member, no false death', async (t) => {
  const [run] = await simulate(['--mode', 'full', '--sizes', '20', '--loss', '0'])
  t.equal(run?.deadAll.length, 4, 'three deaths and the coordinator\'s, each listed')
  t.same(run?.deadAll.filter((ms) => ms == null || ms > 2000), [], 'every member lists each dead within 2 s')
  t.equal(run?.electionAfterDeath.length, 1, 'a new coordinator everyone agrees on')
  t.equal(run?.falseDeaths, 0)
})

t.test('partial mesh without loss: every death found by every member, no false death, bytes and connections bounded', async (t) => {
  const runs = await simulate(['--mode', 'partial', '--sizes', '24,48', '--connections', '4', '--degree', '2', '--loss', '0', '--beacon-bytes', '190'])
  t.same(runs.map((r) => r.n), [24, 48])
  for (const run of runs) {
    t.equal(run.deadAll.length, 4, `N=${run.n}: three deaths and the coordinator's, each listed`)
    t.same(run.deadAll.filter((ms) => ms == null || ms > 6000), [], `N=${run.n}: every member lists each dead within 6 s`)
    t.equal(run.electionAfterDeath.length, 1, `N=${run.n}: a new coordinator everyone agrees on`)
    t.equal(run.electionAfterHeal.length, 1, `N=${run.n}: one coordinator after the heal`)
    t.equal(run.falseDeaths, 0, `N=${run.n}: no false death`)
    t.ok(run.maxConnections <= 4 + 2, `N=${run.n}: at most K + 2 connections (${run.maxConnections})`)
    // Beacons at 4/s mesh-wide, each member sending each on to its few mesh peers, plus a ping a second.
    t.ok(run.bytesPerMemberS < 2500, `N=${run.n}: ${run.bytesPerMemberS.toFixed(0)} B/s per member`)
  }
  const [small, large] = runs.map((r) => r.bytesPerMemberS) as [number, number]
  t.ok(large < 1.3 * small, `bytes per member do not grow with N: ${small.toFixed(0)} B/s at 24, ${large.toFixed(0)} B/s at 48`)
})

t.test('partial mesh: the same seed gives the same run', async (t) => {
  const args = ['--mode', 'partial', '--sizes', '24', '--connections', '4', '--degree', '2', '--seed', '7']
  const [a, b] = await Promise.all([simulate(args), simulate(args)])
  t.same(a?.map(({ deadAll, electionAfterDeath, falseDeaths, bytesPerMemberS }) => ({ deadAll, electionAfterDeath, falseDeaths, bytesPerMemberS })),
    b?.map(({ deadAll, electionAfterDeath, falseDeaths, bytesPerMemberS }) => ({ deadAll, electionAfterDeath, falseDeaths, bytesPerMemberS })))
})
