// One member: its health over the last day (charts from GET /api/v1/mesh/nodes/{peer}/health), its work, its
// models with their latency per provider, its ingest.
import { html } from '../lib/html.js'
import { onNode } from '../lib/api.js'
import { Chart } from '../lib/chart.js'
import { ago, bytes, DASH, duration, ms, num, pct, toMs } from '../lib/format.js'
import { Empty, Meter, Problem, StateBadge, Tags, useApi, useNow } from '../lib/ui.js'
import { accelerators, memPct, temperature } from './mesh.js'

/** The samples of a health history, whatever wraps them: [{ at|t|ts, cpuPct, load1, memUsedBytes, … }]. */
function samplesOf (data) {
  const list = Array.isArray(data) ? data : Array.isArray(data?.samples) ? data.samples : []
  return list
    .map((s) => ({ ...s, time: toMs(s.at ?? s.t ?? s.ts ?? s.time) / 1000 }))
    .filter((s) => Number.isFinite(s.time))
    .sort((a, b) => a.time - b.time)
}

const DAY = 86_400

const column = (samples, pick) => samples.map((s) => { const v = pick(s); return typeof v === 'number' && Number.isFinite(v) ? v : null })

function HealthCharts ({ peerId, again }) {
  const { data, error, loading } = useApi(`/api/v1/mesh/nodes/${encodeURIComponent(peerId)}/health`, again)
  if (error != null) return html`<${Problem} error=${error} what="Health history" />`
  const samples = samplesOf(data)
  if (samples.length === 0) return html`<${Empty}>${loading ? 'Loading the health history…' : 'No health history yet.'}<//>`
  const t = samples.map((s) => s.time)
  const temps = column(samples, (s) => s.tempC)
  const memUsed = column(samples, (s) => s.memUsedBytes)
  return html`<div class="charts">
    <${Chart} span=${DAY} title="CPU" series=${[{ label: 'CPU %' }]} data=${[t, column(samples, (s) => s.cpuPct)]} format=${(v) => `${Math.round(v)}%`} yRange=${[0, 100]} />
    <${Chart} span=${DAY} title="Memory used" series=${[{ label: 'used' }]} data=${[t, memUsed]} format=${bytes} />
    <${Chart} span=${DAY} title="Load (1 min)" series=${[{ label: 'load' }]} data=${[t, column(samples, (s) => s.load1)]} format=${(v) => num(v, 2)} />
    <${Chart} span=${DAY} title="Disk free" series=${[{ label: 'free' }]} data=${[t, column(samples, (s) => s.diskFreeBytes)]} format=${bytes} />
    ${temps.some((v) => v !== null) && html`<${Chart} span=${DAY} title="Temperature" series=${[{ label: '°C' }]} data=${[t, temps]} format=${(v) => `${num(v)} °C`} />`}
  </div>`
}

function Models ({ node, selfId }) {
  const { data, error, loading } = useApi(onNode('/api/v1/models', node.peerId, selfId))
  if (error != null) {
    // Without the member's own list, the beacon still says each model's latency there.
    return html`<${Problem} error=${error} what="Models" />
      ${node.models.length > 0 && html`<table class="plain"><thead><tr><th>Model</th><th>p50 there</th></tr></thead>
        <tbody>${node.models.map((m) => html`<tr key=${m.id}><td class="mono">${m.id}</td><td>${ms(m.p50Ms)}</td></tr>`)}</tbody></table>`}`
  }
  const models = Array.isArray(data) ? data : []
  if (models.length === 0) return html`<${Empty}>${loading ? 'Loading models…' : 'No models registered on this member.'}<//>`
  return html`<div class="table-wrap"><table class="plain models">
    <thead><tr><th>Model</th><th>Origin</th><th>Size</th><th>Provider</th><th>Threads</th><th>p50</th><th>p99</th><th>Runs</th></tr></thead>
    <tbody>${models.flatMap((m) => {
      const providers = m.providers.length > 0 ? m.providers : [null]
      return providers.map((p, i) => html`<tr key=${`${m.id}/${p?.name ?? ''}`}>
        ${i === 0 && html`<td rowspan=${providers.length}><b>${m.name}</b><div class="muted mono small" title=${m.id}>${m.id.slice(0, 16)}</div></td>
          <td rowspan=${providers.length}>${m.origin}</td><td rowspan=${providers.length}>${bytes(m.sizeBytes)}</td>`}
        ${p === null
          ? html`<td colspan="5" class="muted">not measured</td>`
          : html`<td>${p.name}</td><td>${p.threads ?? DASH}</td><td>${ms(p.p50Ms)}</td><td>${ms(p.p99Ms)}</td><td>${p.runs ?? DASH}</td>`}
      </tr>`)
    })}</tbody>
  </table></div>`
}

export function MemberView ({ state, peerId }) {
  const now = useNow(2000)
  const node = state.nodes.find((n) => n.peerId === peerId)
  if (node === undefined) {
    return html`<section class="view"><h2>Member</h2><${Empty}>${state.loaded ? 'No member with this peer id is known here.' : 'Loading…'}<//>
      <p><a href="#/mesh" data-view="mesh">Back to the mesh</a></p></section>`
  }
  const h = node.health
  const selfId = state.self?.peerId
  const cams = state.cameras.filter((c) => c.node === node.name)
  const accel = accelerators(node)
  // Reload the history when the member comes back, so the gap shows.
  const again = node.state

  return html`<section class="view member-view" data-peer-id=${node.peerId} data-state=${node.state}>
    <header class="view-head">
      <p class="crumbs"><a href="#/mesh" data-view="mesh">Mesh</a> ›</p>
      <h2>${node.name} ${node.role === 'coordinator' && html`<span class="crown" title="coordinator">★</span>`}</h2>
      <p class="summary">
        <${StateBadge} state=${node.state} /><span>${node.role}</span><span>term ${node.term}</span>
        <span class="mono small">${node.peerId}</span>
      </p>
    </header>

    <div class="facts">
      <div><span>CPU</span><${Meter} value=${h?.cpuPct} label=${pct(h?.cpuPct)} />${typeof node.cpus === 'number' && html` <span class="muted small">${node.cpus} cores</span>`}</div>
      <div><span>Memory</span><${Meter} value=${memPct(h)} label=${h == null ? DASH : `${bytes(h.memUsedBytes)} / ${bytes(h.memTotalBytes)}`} /></div>
      <div><span>Disk free</span><b>${bytes(h?.diskFreeBytes)}</b></div>
      <div><span>Temperature</span><b>${temperature(node)}</b></div>
      <div><span>Load</span><b>${num(h?.load1, 2)}</b></div>
      <div><span>Up</span><b>${duration(h?.uptimeS)}</b></div>
      <div><span>Last seen</span><b>${node.peerId === selfId ? 'now' : ago(node.lastSeen, now)}</b></div>
      <div><span>Ingest</span><b>${node.ingest == null ? 'none' : `${num(node.ingest.perS)}/s`}</b>
        ${node.ingest != null && html`<span class="muted small"> ${node.ingest.stored} stored, ${node.ingest.rejected} rejected, broker ${node.ingest.connected ? 'connected' : 'down'}</span>`}</div>
    </div>

    <h3>Health, last 24 hours</h3>
    <${HealthCharts} peerId=${node.peerId} again=${again} />

    <h3>Work</h3>
    <p>Runs: <${Tags} items=${node.running} empty="nothing" /></p>
    ${cams.length > 0 && html`<p>Cameras: ${cams.map((c) => html`<a class="tag" href=${`#/camera/${encodeURIComponent(c.camera)}`}>${c.camera}</a> `)}</p>`}
    ${node.unable.length > 0 && html`<p class="warn">Cannot run well: ${node.unable.map((u) => `${u.work} (${u.why})`).join(', ')}</p>`}
    ${node.degraded.length > 0 && html`<p class="warn">Degraded: ${node.degraded.join('; ')}</p>`}
    <p>Providers: <${Tags} items=${node.providers} /> ${accel.length > 0 && html` Accelerators: <${Tags} items=${accel} />`}</p>
    <p class="muted small">Addresses: ${node.addrs.join(', ') || DASH}</p>

    <h3>Models</h3>
    <${Models} node=${node} selfId=${selfId} />
    <p class="muted small">Latency as measured on this member, per execution provider.</p>
  </section>`
}
