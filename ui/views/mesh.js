// The mesh: every member with its state, role, term, health, providers and accelerators and the work it runs;
// the coordinator marked; the picture of the mesh. Rows carry data-peer-id and data-state.
import { html } from '../lib/html.js'
import { accelerator, ago, bytes, DASH, num, shortId } from '../lib/format.js'
import { Meter, StateBadge, Tags, useNow } from '../lib/ui.js'
import { MeshGraph } from './mesh-graph.js'

const ORDER = { alive: 0, suspect: 1, dead: 2, left: 3 }
const byStateName = (a, b) => (ORDER[a.state] ?? 4) - (ORDER[b.state] ?? 4) || a.name.localeCompare(b.name, undefined, { numeric: true })

export function memPct (h) {
  return h != null && h.memTotalBytes > 0 ? (100 * h.memUsedBytes) / h.memTotalBytes : undefined
}

export const temperature = (n) => typeof (n.tempC ?? n.health?.tempC) === 'number' ? `${num(n.tempC ?? n.health?.tempC)}\u00a0°C` : DASH

export function accelerators (n) {
  const list = Array.isArray(n.accelerators) ? n.accelerators : []
  return list.map(accelerator)
}

export function MeshView ({ state }) {
  const now = useNow(2000)
  const nodes = [...state.nodes].sort(byStateName)
  const counts = {}
  for (const n of nodes) counts[n.state] = (counts[n.state] ?? 0) + 1
  const coordinator = nodes.find((n) => n.role === 'coordinator')
  const selfId = state.self?.peerId

  const ingestPerS = nodes.reduce((sum, n) => sum + (n.state === 'alive' && n.ingest != null ? n.ingest.perS : 0), 0)
  const work = nodes.reduce((sum, n) => sum + (n.state === 'alive' ? n.running.length : 0), 0)

  return html`<section class="view mesh-view">
    <header class="view-head">
      <h2>Mesh</h2>
      <p class="summary">
        <span><b>${nodes.length}</b> members</span>
        ${Object.entries(counts).map(([s, c]) => html`<span><${StateBadge} state=${s} /> ${c}</span>`)}
      </p>
    </header>
    <div class="mesh-top">
      <${MeshGraph} nodes=${state.nodes} selfId=${selfId} />
      <div class="facts mesh-facts">
        <div><span>Coordinator</span><b class="big">${coordinator?.name ?? 'none'}</b>${coordinator != null && html`<span class="muted small">term ${coordinator.term}</span>`}</div>
        <div><span>Alive</span><b class="big">${counts.alive ?? 0} / ${nodes.length}</b></div>
        <div><span>Work placed</span><b class="big">${work}</b><span class="muted small">${state.cameras.length} cameras</span></div>
        <div><span>Ingest</span><b class="big">${num(ingestPerS)}/s</b><span class="muted small">MQTT messages stored</span></div>
      </div>
    </div>
    <div class="table-wrap">
        <table class="members cards-on-phone">
          <thead><tr>
            <th>Name</th><th>State</th><th>Role</th><th>Term</th><th>CPU</th><th>Memory</th><th>Disk free</th><th>Temp</th><th>Load</th>
            <th>Providers</th><th>Runs</th><th>Ingest</th><th>Last seen</th>
          </tr></thead>
          <tbody>
            ${nodes.map((n) => {
              const h = n.health
              const mp = memPct(h)
              const accel = accelerators(n)
              return html`<tr key=${n.peerId} data-peer-id=${n.peerId} data-state=${n.state} class=${n.role === 'coordinator' ? 'is-coordinator' : ''}>
                <td data-label="Name" class="name">
                  <a href=${`#/member/${encodeURIComponent(n.peerId)}`}>${n.name}</a>
                  ${n.role === 'coordinator' && html` <span class="crown" title="coordinator">★</span>`}
                  ${n.peerId === selfId && html` <span class="tag subtle" title="the box serving this page">this box</span>`}
                  <div class="muted mono small" title=${n.peerId}>${shortId(n.peerId)}</div>
                </td>
                <td data-label="State"><${StateBadge} state=${n.state} /></td>
                <td data-label="Role">${n.role}</td>
                <td data-label="Term">${n.term}</td>
                <td data-label="CPU"><${Meter} value=${h?.cpuPct} label=${h == null ? DASH : `${Math.round(h.cpuPct)}%`} />${typeof n.cpus === 'number' && html`<div class="muted small">${n.cpus} cores</div>`}</td>
                <td data-label="Memory"><${Meter} value=${mp} label=${h == null ? DASH : `${bytes(h.memUsedBytes)} / ${bytes(h.memTotalBytes)}`} /></td>
                <td data-label="Disk free">${bytes(h?.diskFreeBytes)}</td>
                <td data-label="Temp">${temperature(n)}</td>
                <td data-label="Load">${num(h?.load1, 2)}</td>
                <td data-label="Providers"><${Tags} items=${n.providers} />
                  ${accel.length > 0 && html`<div class="small">${accel.map((a) => html`<span class="tag accel">${a}</span>`)}</div>`}
                  ${n.degraded.length > 0 && html`<div class="warn small">${n.degraded.join('; ')}</div>`}</td>
                <td data-label="Runs"><${Tags} items=${n.running} empty="nothing" /></td>
                <td data-label="Ingest">${n.ingest == null ? DASH : html`${num(n.ingest.perS)}/s${n.ingest.connected ? '' : html` <span class="warn small">broker down</span>`}`}</td>
                <td data-label="Last seen">${n.peerId === selfId ? 'now' : ago(n.lastSeen, now)}</td>
              </tr>`
            })}
          </tbody>
        </table>
    </div>
  </section>`
}
