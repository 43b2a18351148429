import type { OperatorView } from '../../protocols/identity.ts'
import { escapeText } from '../../common/text.ts'
import type { OptimizeResponse } from '../../protocols/optimize.ts'
import type { IngestStatus } from '../ingest/ingest.ts'
import type { BenchResult, CompileResult } from '../../runtime/model-runtime.ts'
import type { CameraListView, DecisionView, ModelView, NodeView, SensorReadingView, StatusView } from '../api/views.ts'
import type { EventView } from '../../media/camera-events.ts'

/** 1536 → "1.5Ki", powers of 1024 like `free -h`. */
export function formatBytes (bytes: number): string {
  const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value}B` : `${value < 10 ? value.toFixed(1) : Math.round(value)}${units[unit] as string}`
}

/** Time since `then`, kubectl style: 12s, 4m, 3h, 2d. */
export function formatAge (ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.floor(s / 60)}m`
  if (s < 172800) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}

/** "/ip4/10.0.0.5/tcp/4001" → "10.0.0.5:4001"; other shapes are shown as they are. */
export function formatAddress (addr: string | undefined): string {
  if (addr == null) return '-'
  const m = /^\/(?:ip4|dns4?|dns6)\/([^/]+)\/tcp\/(\d+)/.exec(addr)
  if (m != null) return `${m[1] as string}:${m[2] as string}`
  const m6 = /^\/ip6\/([^/]+)\/tcp\/(\d+)/.exec(addr)
  return m6 != null ? `[${m6[1] as string}]:${m6[2] as string}` : addr
}

/** The short form of a peer id shown in tables: its last 8 characters. */
export function shortPeerId (peerId: string): string {
  return peerId.slice(-8)
}

/** Every cell is escaped: sensor names, labels, model names and errors come from the wire or from files. */
function renderTable (header: string[], rawRows: string[][]): string {
  const rows = rawRows.map((r) => r.map(escapeText))
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i] as number)).join('   ')
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

/** The `noodle nodes` table, like `serf members` / `kubectl get nodes`; `*` marks the coordinator. */
export function formatNodesTable (nodes: NodeView[], now = Date.now()): string {
  const header = ['NAME', 'PEER', 'STATE', 'ROLE', 'TERM', 'ADDRESS', 'CPU', 'MEM', 'LOAD', 'INGEST', 'LAST SEEN']
  const rows = nodes.map((n) => [
    n.role === 'coordinator' ? `${n.name} *` : n.name,
    shortPeerId(n.peerId),
    n.state,
    n.role,
    String(n.term),
    formatAddress(n.addrs[0]),
    n.health == null ? '-' : `${n.health.cpuPct.toFixed(0)}%`,
    n.health == null ? '-' : `${formatBytes(n.health.memUsedBytes)}/${formatBytes(n.health.memTotalBytes)}`,
    n.health == null ? '-' : n.health.load1.toFixed(2),
    n.ingest == null ? '-' : `${n.ingest.perS}/s${n.ingest.connected ? '' : ' (offline)'}`,
    `${formatAge(now - Date.parse(n.lastSeen))} ago`
  ])
  return renderTable(header, rows)
}

export function formatStatus (s: StatusView): string {
  return renderTable(['FIELD', 'VALUE'], [
    ['name', s.name],
    ['peer id', s.peerId],
    ['version', s.version],
    ['uptime', formatAge(s.uptimeS * 1000)],
    ['role', s.role],
    ['coordinator', s.coordinator == null ? '- (none yet)' : `${s.coordinatorName ?? '?'} (${shortPeerId(s.coordinator)})`],
    ['term', String(s.term)],
    ['members alive', String(s.members)],
    ['loop lag', `${s.loopLagMs} ms`],
    ['mesh', s.meshConnections === 0 ? 'full (every member connected)' : `partial (${s.meshConnections} member connections)`],
    ['disk', `${s.disk.freeBytes === null ? '?' : formatBytes(s.disk.freeBytes)} free${s.disk.full ? ' — FULL: writes fail until space is freed' : ''}`]
  ]).split('\n').slice(1).join('\n')
}

/** The `noodle decisions` table, newest first. */
export function formatDecisionsTable (decisions: DecisionView[], now = Date.now()): string {
  if (decisions.length === 0) return 'no decisions yet\n'
  const header = ['AGE', 'TERM', 'ACTION', 'WORK', 'TARGET', 'OUTCOME', 'REASON']
  const rows = decisions.map((d) => [
    formatAge(now - Date.parse(d.at)),
    String(d.term),
    d.action,
    d.workId,
    d.targetName ?? shortPeerId(d.target),
    d.outcome == null ? 'pending' : d.detail != null && d.detail !== '' ? `${d.outcome} (${d.detail})` : d.outcome,
    d.reason
  ])
  return renderTable(header, rows)
}

/** What `noodle optimize` prints: the coordinator's fresh decisions, or that nothing needs to move. */
export function formatOptimize (r: OptimizeResponse): string {
  const head = `coordinator ${escapeText(shortPeerId(r.coordinator))}, term ${r.term}: `
  if (r.decisions.length === 0) return head + 'placement unchanged\n'
  return head + `${r.decisions.length} decision(s)\n` +
    r.decisions.map((d) => escapeText(`  ${d.action} ${d.workId} on ${shortPeerId(d.target)}: ${d.reason}`) + '\n').join('')
}

/** The `noodle sensors` table: one row per sensor metric. */
export function formatSensorsTable (sensors: SensorReadingView[], now = Date.now()): string {
  if (sensors.length === 0) return 'no sensor readings yet\n'
  const header = ['SENSOR', 'METRIC', 'VALUE', 'RATE', 'READINGS', 'LAST SEEN']
  const rows = sensors.map((s) => [
    s.sensor,
    s.metric,
    String(Math.round(s.value * 1000) / 1000),
    `${s.ratePerS}/s`,
    String(s.count),
    `${formatAge(now - Date.parse(s.lastSeen))} ago`
  ])
  return renderTable(header, rows)
}

export function formatIngest (i: IngestStatus): string {
  return renderTable(['FIELD', 'VALUE'], [
    ['broker', i.broker === null ? 'none configured' : `${i.broker} (${i.connected ? 'connected' : 'not connected'})`],
    ['received', String(i.received)],
    ['stored', String(i.stored)],
    ['rejected', String(i.rejected)],
    ['dead letter', `${i.deadLetter} message(s) kept`]
  ]).split('\n').slice(1).join('\n')
}

function formatShape (shape: Array<number | string>): string {
  return shape.map((d) => typeof d === 'number' && d > 0 ? String(d) : '?').join('×')
}

/** The `noodle models` table: the fastest provider's p50 is the model's latency here. */
export function formatModelsTable (models: ModelView[]): string {
  if (models.length === 0) return 'no models registered (noodle models compile FILE)\n'
  const rows = models.map((m) => [
    m.id.slice(0, 12),
    m.name,
    formatBytes(m.sizeBytes),
    String(m.opset),
    m.inputs.map((i) => `${i.name} ${i.dtype}[${formatShape(i.shape)}]`).join(', '),
    m.providers.map((p) => `${p.name} ${p.p50Ms} ms`).join(', ') || '-'
  ])
  return renderTable(['ID', 'NAME', 'SIZE', 'OPSET', 'INPUTS', 'LATENCY (p50)'], rows)
}

export function formatCompile (r: CompileResult): string {
  // Tensor and provider names come from the model file.
  return [
    `compiled ${r.id}`,
    ...r.inputs.map((i) => `  input  ${i.name} ${i.dtype}[${formatShape(i.shape)}]`),
    ...r.outputs.map((o) => `  output ${o.name} ${o.dtype}[${formatShape(o.shape)}]`),
    ...r.providers.map((p) => `  ${p.name}: p50 ${p.p50Ms} ms, p99 ${p.p99Ms} ms`),
    ...(r.needs === undefined ? [] : [`  not measured: ${r.needs}`])
  ].map(escapeText).join('\n') + '\n'
}

export function formatBench (r: BenchResult): string {
  return escapeText(`${r.id.slice(0, 12)} on ${r.provider}: ${r.runs} runs, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ${r.perSecond}/s`) + '\n'
}

/** The `noodle cameras` table, like Frigate's camera stats: figures for cameras here, where for the others. */
export function formatCamerasTable (cameras: CameraListView[]): string {
  if (cameras.length === 0) return 'no cameras (configure camera work items)\n'
  const n = (x: number | null, suffix = '') => x === null ? '-' : `${x}${suffix}`
  const rows = cameras.map((c) => [
    c.camera, c.node, c.error !== null ? `${c.state}: ${c.error}` : c.state,
    n(c.fpsIn), n(c.fpsInferred), n(c.skipped), n(c.latencyMs, ' ms'), n(c.detections), c.source ?? '-'
  ])
  return renderTable(['CAMERA', 'NODE', 'STATE', 'FPS IN', 'FPS INFERRED', 'SKIPPED', 'LATENCY', 'FOUND', 'SOURCE'], rows)
}

/** The `noodle events` table: newest first, an event in view has no end. */
export function formatEventsTable (events: EventView[]): string {
  if (events.length === 0) return 'no events\n'
  const rows = events.map((e) => [
    e.start, e.end ?? 'in view', e.camera, e.node, e.label, e.score.toFixed(2), e.box.join(','), e.zones.join(',') || '-', e.id
  ])
  return renderTable(['START', 'END', 'CAMERA', 'NODE', 'LABEL', 'SCORE', 'BOX', 'ZONES', 'ID'], rows)
}

/** The `noodle user list` table. */
export function formatOperatorsTable (operators: OperatorView[]): string {
  if (operators.length === 0) return 'no operators (noodle user add NAME --email …)\n'
  return renderTable(['USERNAME', 'EMAIL', 'ROLE', 'STATUS', 'CREATED'], operators.map((o) => [o.username, o.email, o.role, o.status, o.created_at]))
}
