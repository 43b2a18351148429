// Decisions: the placement log with outcomes, live; operators can ask the coordinator for a fresh placement.
import { useState } from 'preact/hooks'
import { html } from '../lib/html.js'
import { api } from '../lib/api.js'
import { ago, shortId, when } from '../lib/format.js'
import { Empty, useNow } from '../lib/ui.js'
import { isOperator } from '../lib/store.js'

function Optimize () {
  const [busy, setBusy] = useState(false)
  const [said, setSaid] = useState(null)
  const click = async () => {
    setBusy(true)
    setSaid(null)
    try {
      const r = await api('/api/v1/ahr/optimize', { body: {} })
      const n = Array.isArray(r?.decisions) ? r.decisions.length : 0
      setSaid({ ok: true, text: n === 0 ? `Term ${r.term}: nothing needs to move.` : `Term ${r.term}: ${n} decision${n === 1 ? '' : 's'}.` })
    } catch (err) {
      setSaid({ ok: false, text: err.message })
    } finally {
      setBusy(false)
    }
  }
  return html`<div class="optimize">
    <button type="button" class="primary" data-action="optimize" disabled=${busy} onClick=${click}>${busy ? 'Asking…' : 'Optimize placement now'}</button>
    ${said !== null && html`<span class=${said.ok ? 'ok' : 'problem'} role="status">${said.text}</span>`}
  </div>`
}

export function DecisionsView ({ state }) {
  const now = useNow(5000)
  const list = state.decisions
  return html`<section class="view decisions-view">
    <header class="view-head">
      <h2>Decisions</h2>
      ${isOperator() && html`<${Optimize} />`}
    </header>
    ${list.length === 0 && html`<${Empty}>No placement decisions yet.<//>`}
    ${list.length > 0 && html`<div class="table-wrap"><table class="plain decisions cards-on-phone">
      <thead><tr><th>When</th><th>Term</th><th>Action</th><th>Work</th><th>Target</th><th>Outcome</th><th>Reason</th></tr></thead>
      <tbody>${list.map((d) => html`<tr key=${d.id} data-decision=${d.id} data-outcome=${d.outcome ?? 'pending'}>
        <td data-label="When" title=${when(d.at)}>${ago(d.at, now)}</td>
        <td data-label="Term">${d.term}</td>
        <td data-label="Action">${d.action}</td>
        <td data-label="Work" class="mono">${d.workId}</td>
        <td data-label="Target"><a href=${`#/member/${encodeURIComponent(d.target)}`}>${d.targetName ?? shortId(d.target)}</a></td>
        <td data-label="Outcome"><span class=${`badge outcome-${(d.outcome ?? 'pending').replace(/[^a-z]/g, '')}`}>${d.outcome ?? 'pending'}</span>${d.detail != null && html`<div class="small muted">${d.detail}</div>`}</td>
        <td data-label="Reason">${d.reason}</td>
      </tr>`)}</tbody>
    </table></div>`}
  </section>`
}
