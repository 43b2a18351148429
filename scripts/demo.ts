#!/usr/bin/env node
/**
 * `npm run demo`: a 3-agent mesh on this machine. Three agents in separate processes, on loopback, joined by
 * bootstrap address (mDNS stays off: this machine's network is not ours to multicast on). demo-1 runs the
 * embedded MQTT broker, and simulated sensors (another process) publish to it. demo-2 has a camera: FFmpeg's
 * test pattern, whose frame counter the PP-OCR text detector (a devDependency) finds, on the node the
 * coordinator places it. demo-3 has a second camera: a parcel that comes and goes on its porch, found by an
 * object detector built like the tests' (a YOLOv8-shaped ONNX graph), so it makes events. Prints the `noodle
 * nodes`, `noodle sensors`, `noodle cameras` and `noodle events` tables, then keeps the mesh up for you to poke at
 * until Ctrl-C; `--once` stops after them.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { apiGet } from '../agent/cli/client.ts'
import { formatCamerasTable, formatEventsTable, formatNodesTable, formatSensorsTable } from '../agent/cli/format.ts'
import type { EventView } from '../media/camera-events.ts'
import type { CameraListView } from '../agent/api/views.ts'
import { PUBLISHER, allSee, bootstrapAddr, nodes, sensors, startAgent, waitFor, waitForAgreement, writeSwarmKey } from './agents.ts'
import { freePort } from './mosquitto.ts'
import type { AgentProcess } from './agents.ts'

const once = process.argv.includes('--once')
const root = mkdtempSync(join(tmpdir(), 'noodle-demo-'))
const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
const agents: AgentProcess[] = []
let simulator: ChildProcess | undefined
const mqttPort = await freePort()
const detector = join(import.meta.dirname, '..', 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_PP-OCRv4_det_infer.onnx')
// 640×640: at 320 the test pattern's digits are too small for the detector. BGR: PaddleOCR's channel order.
const camera = { id: 'cam-pattern', kind: 'camera', source: 'lavfi:testsrc=size=640x480:rate=10', model: detector, size: 640, fps: 2, channels: 'bgr', cpuPct: 60 }
/** A white parcel on a black porch, there 3 s of every 6, at 320×240: each visit an event. */
const parcelModel = join(root, 'parcels.onnx')
const parcelCamera = {
  id: 'cam-porch',
  kind: 'camera',
  source: "lavfi:color=c=black:size=320x240:rate=10,drawbox=x=100:y=60:w=80:h=50:color=white:t=fill:enable='lt(mod(t\\,6)\\,3)'",
  model: parcelModel,
  fps: 5,
  pinned: true,
  cpuPct: 10,
  detector: { labels: ['cat', 'parcel', 'dog'] },
  zones: { step: [[120, 90], [160, 90], [160, 130], [120, 130]] }
}
const cameras = (a: AgentProcess) => apiGet<CameraListView[]>(a.socketPath, '/api/v1/cameras')
const events = (a: AgentProcess) => apiGet<EventView[]>(a.socketPath, '/api/v1/events')
let camerasShown: string | undefined
let porchHost: AgentProcess | undefined

async function shutdown (code: number): Promise<never> {
  simulator?.kill('SIGTERM')
  for (const a of agents) a.child.kill('SIGTERM')
  await Promise.all(agents.map((a) => a.exited))
  rmSync(root, { recursive: true, force: true })
  process.exit(code)
}

try {
  const common = { root, swarmKeyFile, logLevel: 'info' }
  // demo-1 ingests what the sensors publish to its embedded broker; topics name sensor and metric.
  agents.push(await startAgent({
    ...common,
    name: 'demo-1',
    config: {
      mqtt: {
        topics: ['sensors/#'],
        topicParsing: [{ topic: 'sensors/+/+', levels: '_/sensor/metric' }, { topic: 'sensors/+', levels: '_/sensor' }],
        valueFields: ['value', 'temperature', 'humidity'],
        embeddedBroker: { host: '127.0.0.1', port: mqttPort }
      }
    }
  }))
  simulator = spawn(process.execPath, [PUBLISHER, '--url', `mqtt://127.0.0.1:${mqttPort}`, '--simulate'], { stdio: 'ignore' })
  const entry = await bootstrapAddr(agents[0] as AgentProcess)
  // The camera's model ships with the dev dependencies; an install without them runs the demo without a camera.
  const work = existsSync(detector) ? [camera] : []
  // The parcel detector is written with onnx-proto, a devDependency too.
  const porch = await import('./detector-models.ts').then(({ writeDetectorModel }) => {
    writeDetectorModel(parcelModel, { layout: 'yolov8', width: 320, height: 320 })
    return [parcelCamera]
  }, () => [])
  const configs: Record<string, Record<string, unknown>> = { 'demo-2': { work }, 'demo-3': { work: porch } }
  agents.push(...await Promise.all(['demo-2', 'demo-3'].map((name) => startAgent({ ...common, name, bootstrap: [entry], config: configs[name] }))))
  await waitFor('the three agents to see each other', () => allSee(agents, agents, 'alive'), 20_000)
  await waitForAgreement('the three agents to agree on a coordinator', agents)
  await waitFor('a few readings from each simulated sensor', async () => {
    const seen = await sensors(agents[0] as AgentProcess)
    return seen.length >= 4 && seen.every((s) => s.count >= 3)
  }, 20_000)
  if (work.length > 0) {
    // The table as it was when the detector found the text: a later result (another frame) may find none.
    const found = await waitFor('the camera to find text', async () => {
      const seen = (await cameras(agents[0] as AgentProcess)).find((c) => c.camera === camera.id)
      const host = agents.find((a) => a.name === seen?.node)
      const list = host === undefined ? [] : await cameras(host)
      return (list.find((c) => c.camera === camera.id)?.detections ?? 0) > 0 && { host: host as AgentProcess, list }
    }, 90_000)
    camerasShown = `$ noodle cameras --data-dir ${found.host.dataDir}\n${formatCamerasTable(found.list)}\n`
  }
  if (porch.length > 0) {
    const demo3 = agents[2] as AgentProcess
    await waitFor('a parcel to come and go', async () => (await events(demo3)).some((e) => e.camera === parcelCamera.id && e.end !== null), 60_000)
    porchHost = demo3
  }
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n${agents.map((a) => a.output()).join('\n')}`)
  await shutdown(1)
}

const first = agents[0] as AgentProcess
process.stdout.write(`$ noodle nodes --data-dir ${first.dataDir}\n${formatNodesTable(await nodes(first))}\n`)
process.stdout.write(`$ noodle sensors --data-dir ${first.dataDir}\n${formatSensorsTable(await sensors(first))}\n`)
if (camerasShown !== undefined) process.stdout.write(camerasShown)
if (porchHost !== undefined) process.stdout.write(`$ noodle events --data-dir ${porchHost.dataDir}\n${formatEventsTable(await events(porchHost))}\n`)
if (once) await shutdown(0)

const cli = relative(process.cwd(), join(import.meta.dirname, '..', 'bin', 'noodle')) || 'bin/noodle'
process.stdout.write(`The mesh is up. In another terminal, try:
  ${cli} nodes --watch --data-dir ${first.dataDir}
  ${cli} status --json --data-dir ${agents[1]?.dataDir ?? ''}
  kill -TERM ${agents[2]?.child.pid ?? ''}    # demo-3 leaves: it turns "left"
  kill -STOP ${agents[1]?.child.pid ?? ''}    # demo-2 freezes: "suspect", never "dead"; kill -CONT revives it
  kill -KILL ${agents[1]?.child.pid ?? ''}    # demo-2 crashes: "dead" at once (its port refuses), and its camera moves
  ${cli} cameras --watch --data-dir ${first.dataDir}   # the test-pattern camera: where it runs, what it finds
  ${cli} events --watch --zone step --data-dir ${first.dataDir}   # the parcel on demo-3's porch, as every member lists it
  ${cli} optimize --data-dir ${first.dataDir}   # ask the coordinator for a fresh placement
  ${cli} sensors --watch --data-dir ${first.dataDir}   # the simulated sensors, ingested over MQTT
  mosquitto_pub -p ${mqttPort} -t sensors/desk/co2 -m 612   # publish a reading of your own (or mosquitto_sub -t 'noodle/#' -v)
Ctrl-C stops the demo and removes ${root}.
`)
process.on('SIGINT', () => { void shutdown(0) })
process.on('SIGTERM', () => { void shutdown(0) })
