import t from 'tap'
import { formatAddress, formatAge, formatBytes, formatCamerasTable, formatDecisionsTable, formatIngest, formatNodesTable, formatOptimize, formatSensorsTable, formatStatus, shortPeerId } from '../../../agent/cli/format.ts'
import type { NodeView } from '../../../agent/api/views.ts'

t.test('units', async (t) => {
  t.equal(formatBytes(512), '512B')
  t.equal(formatBytes(1536), '1.5Ki')
  t.equal(formatBytes(24 * 1024 ** 3), '24Gi')
  t.equal(formatBytes(3 * 1024 ** 5), '3072Ti')
  t.equal(formatAge(-5), '0s')
  t.equal(formatAge(119_000), '119s')
  t.equal(formatAge(600_000), '10m')
  t.equal(formatAge(3 * 3600_000), '3h')
  t.equal(formatAge(3 * 86400_000), '3d')
  t.equal(formatAddress('/ip4/10.0.0.5/tcp/4001'), '10.0.0.5:4001')
  t.equal(formatAddress('/dns4/pi.local/tcp/4001'), 'pi.local:4001')
  t.equal(formatAddress('/ip6/fe80::1/tcp/4001'), '[fe80::1]:4001')
  t.equal(formatAddress('/unix/x'), '/unix/x')
  t.equal(formatAddress(undefined), '-')
  t.equal(shortPeerId('12D3KooWQwdqLaMv2dPBv1WVywHdTerao7cMJEuVyEuGUTJTz1hJ'), 'UTJTz1hJ')
})

t.test('the nodes table has aligned columns in the documented order', async (t) => {
  const now = Date.parse('2026-01-01T00:00:10Z')
  const nodes: NodeView[] = [
    { peerId: '12D3KooWaaaaaaaa11111111', name: 'pi-kitchen', state: 'alive', role: 'coordinator', term: 3, running: ['cam-1'], providers: ['cpu'], models: [], degraded: [], unable: [], ingest: { received: 10, stored: 9, rejected: 1, perS: 42, brokerDropped: 0, connected: true }, addrs: ['/ip4/10.0.0.5/tcp/4001'], lastSeen: '2026-01-01T00:00:09Z', health: { cpuPct: 12.4, load1: 0.5, memUsedBytes: 512 * 1024 ** 2, memTotalBytes: 4 * 1024 ** 3, diskFreeBytes: 1, uptimeS: 5 }, tempC: 51.5, accelerators: ['dri'], cpus: 4, links: ['12D3KooWbbbbbbbb22222222'] },
    { peerId: '12D3KooWbbbbbbbb22222222', name: 'jet', state: 'dead', role: 'member', term: 2, running: [], providers: [], models: [], degraded: [], unable: [], ingest: null, addrs: [], lastSeen: '2026-01-01T00:00:00Z', health: null, tempC: null, accelerators: [], cpus: 0, links: [] }
  ]
  const lines = formatNodesTable(nodes, now).trimEnd().split('\n')
  t.match(lines[0], /^NAME\s+PEER\s+STATE\s+ROLE\s+TERM\s+ADDRESS\s+CPU\s+MEM\s+LOAD\s+INGEST\s+LAST SEEN$/)
  t.match(lines[1], /^pi-kitchen \*\s+11111111\s+alive\s+coordinator\s+3\s+10\.0\.0\.5:4001\s+12%\s+512Mi\/4\.0Gi\s+0\.50\s+42\/s\s+1s ago$/)
  t.match(lines[2], /^jet\s+22222222\s+dead\s+member\s+2\s+-\s+-\s+-\s+-\s+-\s+10s ago$/)
  t.equal(lines[1]?.indexOf('11111111'), lines[0]?.indexOf('PEER'), 'columns line up')
  const disk = { freeBytes: 2 * 1024 ** 3, full: false, lastFullAt: null }
  const status = formatStatus({ peerId: 'P', name: 'n', version: '1', uptimeS: 90, role: 'member', coordinator: null, coordinatorName: null, term: 0, members: 3, loopLagMs: 2, meshConnections: 0, disk })
  t.match(status, /name\s+n\n/)
  t.match(status, /coordinator\s+- \(none yet\)\n/)
  t.match(status, /members alive\s+3/)
  t.match(status, /disk\s+2\.0Gi free\n/)
  t.match(status, /mesh\s+full \(every member connected\)\n/)
  const led = formatStatus({ peerId: 'P', name: 'n', version: '1', uptimeS: 90, role: 'member', coordinator: '12D3KooWcccccccc33333333', coordinatorName: 'jet', term: 7, members: 3, loopLagMs: 2, meshConnections: 6, disk: { freeBytes: 0, full: true, lastFullAt: '2026-01-01T00:00:00.000Z' } })
  t.match(led, /coordinator\s+jet \(33333333\)\n/)
  t.match(led, /term\s+7\n/)
  t.match(led, /loop lag\s+2 ms/)
  t.match(led, /mesh\s+partial \(6 member connections\)\n/)
  t.match(led, /disk\s+0B? free — FULL: writes fail until space is freed/)
})

t.test('the decisions table and the optimize answer', async (t) => {
  const now = Date.parse('2026-01-01T00:01:00Z')
  const base = { term: 4, coordinator: 'C', target: '12D3KooWdddddddd44444444', action: 'run', workId: 'cam-door', reason: 'accelerator with headroom', at: '2026-01-01T00:00:00Z' }
  const lines = formatDecisionsTable([
    { ...base, id: 'a', targetName: 'jetson', outcome: 'applied', detail: 'started' },
    { ...base, id: 'b', targetName: null, action: 'stop', outcome: null, detail: null },
    { ...base, id: 'c', targetName: 'pi', outcome: 'stale', detail: '' }
  ], now).trimEnd().split('\n')
  t.match(lines[0], /^AGE\s+TERM\s+ACTION\s+WORK\s+TARGET\s+OUTCOME\s+REASON$/)
  t.match(lines[1], /^60s\s+4\s+run\s+cam-door\s+jetson\s+applied \(started\)\s+accelerator with headroom$/)
  t.match(lines[2], /^60s\s+4\s+stop\s+cam-door\s+44444444\s+pending\s+/, 'unknown names by short peer id; no answer yet: pending')
  t.match(lines[3], /\s+stale\s+/)
  t.equal(formatDecisionsTable([]), 'no decisions yet\n')
  t.equal(formatOptimize({ v: 1, term: 2, coordinator: '12D3KooWcccccccc33333333', decisions: [] }), 'coordinator 33333333, term 2: placement unchanged\n')
  t.equal(formatOptimize({ v: 1, term: 2, coordinator: '12D3KooWcccccccc33333333', decisions: [{ id: 'x', target: '12D3KooWdddddddd44444444', action: 'run', workId: 'cam', reason: 'most headroom' }] }),
    'coordinator 33333333, term 2: 1 decision(s)\n  run cam on 44444444: most headroom\n')
})

t.test('the sensors table and the ingest summary', async (t) => {
  const now = Date.parse('2026-01-01T00:01:00Z')
  t.equal(formatSensorsTable([], now), 'no sensor readings yet\n')
  const lines = formatSensorsTable([
    { sensor: 'kitchen', metric: 'temperature', value: 21.23456, ts: '2026-01-01T00:00:58Z', lastSeen: '2026-01-01T00:00:58Z', count: 12, ratePerS: 0.5 }
  ], now).trimEnd().split('\n')
  t.match(lines[0], /^SENSOR\s+METRIC\s+VALUE\s+RATE\s+READINGS\s+LAST SEEN$/)
  t.match(lines[1], /^kitchen\s+temperature\s+21\.235\s+0\.5\/s\s+12\s+2s ago$/)
  const summary = formatIngest({ received: 10, stored: 8, rejected: 2, deadLetter: 2, connected: true, broker: 'mqtt://10.0.0.2:1883' })
  t.match(summary, /^broker\s+mqtt:\/\/10\.0\.0\.2:1883 \(connected\)\nreceived\s+10\nstored\s+8\nrejected\s+2\ndead letter\s+2 message\(s\) kept/)
  t.match(formatIngest({ received: 0, stored: 0, rejected: 0, deadLetter: 0, connected: false, broker: 'mqtt://b' }), /\(not connected\)/)
})

t.test('the cameras table', async (t) => {
  t.equal(formatCamerasTable([]), 'no cameras (configure camera work items)\n')
  const lines = formatCamerasTable([
    { camera: 'door', node: 'pi-1', peerId: 'peer-a', source: 'rtsp://cam/1', model: 'abc', state: 'running', fpsIn: 5, fpsInferred: 4.5, skipped: 12, latencyMs: 80, detections: 3, decoder: 'software', detector: 'yolov8', outputErrors: 0, motionFrames: 9, stillFrames: 3, error: null },
    { camera: 'yard', node: 'pi-2', peerId: 'peer-a', source: null, model: null, state: 'remote', fpsIn: null, fpsInferred: null, skipped: null, latencyMs: null, detections: null, decoder: null, detector: null, outputErrors: null, motionFrames: null, stillFrames: null, error: null },
    { camera: 'shed', node: 'pi-1', peerId: 'peer-a', source: 'lavfi:testsrc', model: 'x', state: 'failed', fpsIn: 0, fpsInferred: 0, skipped: 0, latencyMs: null, detections: 0, decoder: 'software', detector: null, outputErrors: null, motionFrames: null, stillFrames: null, error: 'no model' }
  ]).trimEnd().split('\n')
  t.match(lines[0], /^CAMERA\s+NODE\s+STATE\s+FPS IN\s+FPS INFERRED\s+SKIPPED\s+LATENCY\s+FOUND\s+SOURCE$/)
  t.match(lines[1], /^door\s+pi-1\s+running\s+5\s+4\.5\s+12\s+80 ms\s+3\s+rtsp:\/\/cam\/1$/)
  t.match(lines[2], /^yard\s+pi-2\s+remote\s+-\s+-\s+-\s+-\s+-\s+-$/)
  t.match(lines[3], /^shed\s+pi-1\s+failed: no model\s+0/)
})
