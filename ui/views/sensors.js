// Sensors of any member: each metric's latest value, a chart of one from the rollups, and the dead letter with
// the reasons messages were refused. Sensor and metric names come from MQTT topics: they show as text only.
import { useState } from 'preact/hooks'
import { html } from '../lib/html.js'
import { onNode, query } from '../lib/api.js'
import { Chart } from '../lib/chart.js'
import { ago, bytes, num, toMs, when } from '../lib/format.js'
import { Empty, Problem, useApi, useNow } from '../lib/ui.js'

const RESOLUTIONS = ['minute', 'hour', 'day', 'month']

/** Points of a series, whatever wraps them: [{ at|t|ts|start, avg|value|mean, min?, max? }]. */
function pointsOf (data) {
  const list = Array.isArray(data) ? data : Array.isArray(data?.points) ? data.points : Array.isArray(data?.series) ? data.series : []
  return list
    .map((p) => ({ time: toMs(p.at ?? p.t ?? p.ts ?? p.start ?? p.bucket) / 1000, avg: p.avg ?? p.mean ?? p.value, min: p.min, max: p.max }))
    .filter((p) => Number.isFinite(p.time))
    .sort((a, b) => a.time - b.time)
}

function Series ({ node, selfId, sensor, metric }) {
  const [res, setRes] = useState('hour')
  const path = onNode(`/api/v1/sensors/series${query({ sensor, metric, res })}`, node, selfId)
  const { data, error, loading } = useApi(path)
  const points = pointsOf(data)
  const hasRange = points.some((p) => typeof p.min === 'number')
  const t = points.map((p) => p.time)
  const series = hasRange ? [{ label: 'mean' }, { label: 'min' }, { label: 'max' }] : [{ label: 'value' }]
  const values = hasRange ? [points.map((p) => p.avg ?? null), points.map((p) => p.min ?? null), points.map((p) => p.max ?? null)] : [points.map((p) => p.avg ?? null)]
  return html`<div class="series">
    <div class="series-head">
      <h3><span class="sensor-name">${sensor}</span> · <span class="metric-name">${metric}</span></h3>
      <div class="segmented" role="group" aria-label="resolution">
        ${RESOLUTIONS.map((r) => html`<button type="button" class=${r === res ? 'on' : ''} aria-pressed=${r === res} onClick=${() => { setRes(r) }}>${r}</button>`)}
      </div>
    </div>
    ${error != null
      ? html`<${Problem} error=${error} what="Series" />`
      : points.length === 0
        ? html`<${Empty}>${loading ? 'Loading…' : 'No rollups at this resolution yet.'}<//>`
        : html`<${Chart} series=${series} data=${[t, ...values]} format=${(v) => num(v, 2)} />`}
  </div>`
}

function DeadLetters ({ node, selfId, again }) {
  const { data, error, loading } = useApi(onNode('/api/v1/ingest/dead-letters', node, selfId), again)
  if (error != null) return html`<${Problem} error=${error} what="Dead letter" />`
  const list = Array.isArray(data) ? data : []
  if (list.length === 0) return html`<${Empty}>${loading ? 'Loading…' : 'Nothing refused.'}<//>`
  return html`<div class="table-wrap"><table class="plain dead-letters cards-on-phone">
    <thead><tr><th>When</th><th>Topic</th><th>Reason</th><th>Detail</th><th>Size</th><th>Payload</th></tr></thead>
    <tbody>${list.map((d, i) => html`<tr key=${i}>
      <td data-label="When">${when(d.at)}</td>
      <td data-label="Topic" class="mono topic">${d.topic}</td>
      <td data-label="Reason"><span class="tag warn">${d.reason}</span></td>
      <td data-label="Detail">${d.detail}</td>
      <td data-label="Size">${bytes(d.size)}</td>
      <td data-label="Payload" class="mono payload">${typeof d.payload === 'string' && d.payload.length > 160 ? `${d.payload.slice(0, 160)}…` : d.payload}</td>
    </tr>`)}</tbody>
  </table></div>`
}

export function SensorsView ({ state, params }) {
  const now = useNow(5000)
  const selfId = state.self?.peerId
  const ingesting = state.nodes.filter((n) => n.ingest != null || n.peerId === selfId)
  const [node, setNode] = useState(params.get('node') ?? selfId ?? '')
  const [picked, setPicked] = useState(null)
  const [again, setAgain] = useState(0)
  const target = node === '' ? selfId : node
  const { data, error, loading } = useApi(target === undefined ? null : onNode('/api/v1/sensors', target, selfId), again)
  const sensors = Array.isArray(data) ? [...data].sort((a, b) => a.sensor.localeCompare(b.sensor) || a.metric.localeCompare(b.metric)) : []

  return html`<section class="view sensors-view">
    <header class="view-head">
      <h2>Sensors</h2>
      <div class="toolbar">
        <label>Member <select value=${target ?? ''} onChange=${(e) => { setNode(e.currentTarget.value); setPicked(null) }}>
          ${ingesting.map((n) => html`<option value=${n.peerId}>${n.name}${n.peerId === selfId ? ' (this box)' : ''}</option>`)}
        </select></label>
        <button type="button" onClick=${() => { setAgain((a) => a + 1) }}>Refresh</button>
      </div>
    </header>
    ${error != null && html`<${Problem} error=${error} what="Sensors" />`}
    ${error == null && sensors.length === 0 && html`<${Empty}>${loading ? 'Loading sensors…' : 'This member ingests no sensor data.'}<//>`}
    ${sensors.length > 0 && html`<div class="table-wrap"><table class="plain sensors cards-on-phone">
      <thead><tr><th>Sensor</th><th>Metric</th><th>Value</th><th>Rate</th><th>Readings</th><th>Measured</th><th>Last seen</th></tr></thead>
      <tbody>${sensors.map((s) => {
        const on = picked !== null && picked.sensor === s.sensor && picked.metric === s.metric
        return html`<tr key=${`${s.sensor}\u0000${s.metric}`} class=${on ? 'picked' : ''} data-sensor=${s.sensor} data-metric=${s.metric}>
          <td data-label="Sensor" class="sensor-name"><button type="button" class="linkish" onClick=${() => { setPicked({ sensor: s.sensor, metric: s.metric }) }}>${s.sensor}</button></td>
          <td data-label="Metric" class="metric-name">${s.metric}</td>
          <td data-label="Value"><b>${num(s.value, 3)}</b></td>
          <td data-label="Rate">${num(s.ratePerS, 2)}/s</td>
          <td data-label="Readings">${s.count}</td>
          <td data-label="Measured">${when(s.ts)}</td>
          <td data-label="Last seen">${ago(s.lastSeen, now)}</td>
        </tr>`
      })}</tbody>
    </table></div>`}
    ${picked !== null && target !== undefined && html`<${Series} key=${`${target}\u0000${picked.sensor}\u0000${picked.metric}`} node=${target} selfId=${selfId} sensor=${picked.sensor} metric=${picked.metric} />`}
    <h3>Dead letter</h3>
    <p class="muted small">Messages this member refused, newest first, with the reason.</p>
    ${target !== undefined && html`<${DeadLetters} node=${target} selfId=${selfId} again=${again} />`}
  </section>`
}
