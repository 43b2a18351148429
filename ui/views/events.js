// Events: what the cameras followed, filtered by camera, label, zone and time, with their snapshots. New events
// arrive over the live feed and join the list when they match.
import { useState } from 'preact/hooks'
import { html } from '../lib/html.js'
import { query } from '../lib/api.js'
import { DASH, num, toMs, when } from '../lib/format.js'
import { Empty, Problem, useApi } from '../lib/ui.js'

function matches (e, f) {
  if (f.camera && e.camera !== f.camera) return false
  if (f.label && e.label !== f.label) return false
  if (f.zone && !(Array.isArray(e.zones) && e.zones.includes(f.zone))) return false
  const start = toMs(e.start)
  if (f.since && start < toMs(f.since)) return false
  if (f.until && start > toMs(f.until)) return false
  return true
}

/** An event's snapshot: this box asks the member whose camera saw it (by the peer id that announced it). */
export const snapshotUrl = (e) => `/api/v1/events/${encodeURIComponent(e.id)}/snapshot.jpg`

/** The events the API gives for `filters`, with the live ones that match merged in. */
export function EventList ({ state, filters, limit = 100 }) {
  const path = `/api/v1/events${query({ ...filters, since: filters.since ? toMs(filters.since) : undefined, until: filters.until ? toMs(filters.until) : undefined, limit })}`
  const { data, error, loading } = useApi(path)
  const byId = new Map()
  for (const e of Array.isArray(data) ? data : []) byId.set(e.id, e)
  for (const e of state.events) if (matches(e, filters) && (byId.has(e.id) || data !== null)) byId.set(e.id, e)
  const events = [...byId.values()].sort((a, b) => String(b.start).localeCompare(String(a.start))).slice(0, limit)
  if (error != null) return html`<${Problem} error=${error} what="Events" />`
  if (events.length === 0) return html`<${Empty}>${loading ? 'Loading events…' : 'No events.'}<//>`
  return html`<ul class="event-list">
    ${events.map((e) => html`<li key=${e.id} class="event" data-event=${e.id}>
      <a class="snapshot" href=${snapshotUrl(e)} target="_blank" rel="noopener">
        <img src=${snapshotUrl(e)} alt=${`snapshot of ${e.label} on ${e.camera}`} loading="lazy" width="160" height="120" />
      </a>
      <div>
        <p><b class="label">${e.label}</b> <span class="muted">${num(e.score, 2)}</span>
          ${e.end === null ? html` <span class="badge state-alive">in view</span>` : ''}</p>
        <p class="small"><a href=${`#/camera/${encodeURIComponent(e.camera)}`}>${e.camera}</a> <span class="muted">on ${e.node}</span></p>
        <p class="small muted">${when(e.start)}${e.end !== null ? ` → ${when(e.end)}` : ''}</p>
        ${Array.isArray(e.zones) && e.zones.length > 0 && html`<p class="small">zones: ${e.zones.map((z) => html`<span class="tag">${z}</span>`)}</p>`}
        <p class="small muted mono">box ${Array.isArray(e.box) ? e.box.join(', ') : DASH}</p>
      </div>
    </li>`)}
  </ul>`
}

const localInput = (t) => {
  const at = toMs(t)
  if (Number.isNaN(at)) return ''
  const d = new Date(at - new Date(at).getTimezoneOffset() * 60_000)
  return d.toISOString().slice(0, 16)
}

export function EventsView ({ state, params }) {
  const initial = { camera: params.get('camera') ?? '', label: params.get('label') ?? '', zone: params.get('zone') ?? '', since: params.get('since') ?? '', until: params.get('until') ?? '' }
  const [filters, setFilters] = useState(initial)
  const cameras = [...new Set(state.cameras.map((c) => c.camera).concat(state.events.map((e) => e.camera)))].sort()
  const labels = [...new Set(state.events.map((e) => e.label))].sort()

  const submit = (e) => {
    e.preventDefault()
    const f = e.currentTarget.elements
    const read = (name) => f[name].value.trim()
    const next = { camera: read('camera'), label: read('label'), zone: read('zone'), since: read('since') ? new Date(read('since')).toISOString() : '', until: read('until') ? new Date(read('until')).toISOString() : '' }
    setFilters(next)
    history.replaceState(null, '', `#/events${query(next)}`)
  }

  return html`<section class="view events-view">
    <header class="view-head"><h2>Events</h2></header>
    <form class="filters" onSubmit=${submit}>
      <label>Camera <select name="camera" value=${filters.camera}>
        <option value="">any</option>
        ${cameras.map((c) => html`<option value=${c}>${c}</option>`)}
        ${filters.camera !== '' && !cameras.includes(filters.camera) && html`<option value=${filters.camera}>${filters.camera}</option>`}
      </select></label>
      <label>Label <input name="label" list="event-labels" value=${filters.label} placeholder="any" /></label>
      <datalist id="event-labels">${labels.map((l) => html`<option value=${l} />`)}</datalist>
      <label>Zone <input name="zone" value=${filters.zone} placeholder="any" /></label>
      <label>Since <input name="since" type="datetime-local" value=${localInput(filters.since)} /></label>
      <label>Until <input name="until" type="datetime-local" value=${localInput(filters.until)} /></label>
      <button type="submit">Show</button>
    </form>
    <${EventList} state=${state} filters=${filters} />
  </section>`
}
