// Operators (admins): the accounts and the audit log.
import { html } from '../lib/html.js'
import { when } from '../lib/format.js'
import { Empty, Problem, useApi } from '../lib/ui.js'

const text = (v) => v == null ? '' : typeof v === 'string' ? v : JSON.stringify(v)

export function OperatorsView () {
  const users = useApi('/api/v1/identity/users')
  const audit = useApi('/api/v1/identity/audit')
  const accounts = Array.isArray(users.data) ? users.data : []
  const log = Array.isArray(audit.data) ? audit.data.slice(0, 200) : []
  return html`<section class="view operators-view">
    <header class="view-head"><h2>Operators</h2>
      <p class="muted small">Accounts are added and removed with <code>noodle user</code> on a box.</p></header>
    <h3>Accounts</h3>
    <${Problem} error=${users.error} what="Accounts" />
    ${accounts.length === 0 && users.error == null && html`<${Empty}>${users.loading ? 'Loading…' : 'No accounts.'}<//>`}
    ${accounts.length > 0 && html`<div class="table-wrap"><table class="plain cards-on-phone">
      <thead><tr><th>Username</th><th>Role</th><th>Email</th><th>Status</th><th>Created</th></tr></thead>
      <tbody>${accounts.map((u) => html`<tr key=${u.user_id} data-user=${u.username}>
        <td data-label="Username"><b>${u.username}</b></td><td data-label="Role"><span class=${`badge role-${u.role}`}>${u.role}</span></td>
        <td data-label="Email">${u.email}</td><td data-label="Status">${u.status}</td><td data-label="Created">${when(u.created_at)}</td>
      </tr>`)}</tbody>
    </table></div>`}
    <h3>Audit log</h3>
    <${Problem} error=${audit.error} what="Audit log" />
    ${log.length === 0 && audit.error == null && html`<${Empty}>${audit.loading ? 'Loading…' : 'Nothing yet.'}<//>`}
    ${log.length > 0 && html`<div class="table-wrap"><table class="plain cards-on-phone">
      <thead><tr><th>When</th><th>Actor</th><th>Action</th><th>Target</th><th>Detail</th></tr></thead>
      <tbody>${log.map((a, i) => html`<tr key=${i}>
        <td data-label="When">${when(a.at)}</td><td data-label="Actor">${text(a.actor)}</td><td data-label="Action">${text(a.action)}</td>
        <td data-label="Target">${text(a.target)}</td><td data-label="Detail" class="small">${text(a.detail)}</td>
      </tr>`)}</tbody>
    </table></div>`}
  </section>`
}
