// The Noodle dashboard: one page, served by the agent, no build step. Preact + htm; uPlot for charts, loaded
// when a chart is first shown. Views are reached by hash links (#/mesh, #/member/<peer id>, #/cameras,
// #/camera/<id>, #/events, #/sensors, #/decisions, #/operators), each nav link marked with data-view.
import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { html } from './lib/html.js'
import { api, onUnauthorized } from './lib/api.js'
import { connectLive } from './lib/live.js'
import { isAdmin, mergeDecisions, mergeEvents, state, subscribe, update } from './lib/store.js'
import { Login } from './views/login.js'
import { MeshView } from './views/mesh.js'
import { MemberView } from './views/member.js'
import { CamerasView, CameraView } from './views/cameras.js'
import { EventsView } from './views/events.js'
import { SensorsView } from './views/sensors.js'
import { DecisionsView } from './views/decisions.js'
import { OperatorsView } from './views/operators.js'

const VIEWS = [
  ['mesh', 'Mesh'],
  ['cameras', 'Cameras'],
  ['events', 'Events'],
  ['sensors', 'Sensors'],
  ['decisions', 'Decisions'],
  ['operators', 'Operators']
]

function parseRoute () {
  const raw = location.hash.replace(/^#\/?/, '')
  const [path, search = ''] = raw.split('?')
  const [view = 'mesh', ...rest] = path.split('/')
  let arg = ''
  try { arg = decodeURIComponent(rest.join('/')) } catch { arg = '' }
  return { view: view === '' ? 'mesh' : view, arg, params: new URLSearchParams(search), key: raw }
}

let stopLive = null

/** What the page shows at first: the mesh, its cameras, recent events and decisions, and who this box is. */
async function loadAll () {
  const [self, nodes, cameras, events, decisions] = await Promise.allSettled([
    api('/api/v1/system/status'),
    api('/api/v1/mesh/nodes'),
    api('/api/v1/cameras'),
    api('/api/v1/events?limit=100'),
    api('/api/v1/ahr/decisions')
  ])
  const ok = (r) => r.status === 'fulfilled' && r.value != null
  update({
    ...(ok(self) ? { self: self.value } : {}),
    ...(ok(nodes) && Array.isArray(nodes.value) ? { nodes: nodes.value } : {}),
    ...(ok(cameras) && Array.isArray(cameras.value) ? { cameras: cameras.value } : {}),
    loaded: true
  })
  if (ok(events) && Array.isArray(events.value)) mergeEvents(events.value)
  if (ok(decisions) && Array.isArray(decisions.value)) mergeDecisions(decisions.value)
}

function onLive (m) {
  switch (m.type) {
    case 'hello':
      if (typeof m.username === 'string') update({ me: { username: m.username, role: m.role } })
      break
    case 'nodes':
      if (Array.isArray(m.nodes)) update({ nodes: m.nodes })
      break
    case 'cameras':
      if (Array.isArray(m.cameras)) update({ cameras: m.cameras })
      break
    case 'event':
      if (m.event != null) mergeEvents([m.event])
      break
    case 'decision':
      if (m.decision != null) mergeDecisions([m.decision])
      break
  }
}

function endSession (notice) {
  if (stopLive !== null) stopLive()
  stopLive = null
  update({ me: null, self: null, nodes: [], cameras: [], events: [], decisions: [], loaded: false, live: 'connecting', notice })
}

function startSession (me) {
  update({ me, notice: null })
  loadAll()
  if (stopLive !== null) stopLive()
  let first = true
  stopLive = connectLive({
    onMessage: onLive,
    onState: (live) => { update({ live }) },
    // After a reconnect, catch up on what the feed said while it was down.
    onOpen: () => { if (!first) loadAll(); first = false },
    onUnauthorized: () => { endSession('Your session ended: sign in again.') }
  })
}

onUnauthorized(() => { if (state.me !== null) endSession('Your session ended: sign in again.') })

async function logout () {
  try { await api('/api/v1/identity/logout', { body: {}, quiet401: true }) } catch {}
  endSession(null)
}

const LIVE_TEXT = { open: 'live', connecting: 'connecting…', closed: 'reconnecting…' }

function Header ({ route }) {
  const current = route.view === 'member' ? 'mesh' : route.view === 'camera' ? 'cameras' : route.view
  return html`<header class="top">
    <a class="brand" href="#/mesh"><img src="/ui/icon.svg" alt="" width="24" height="24" /><span>Noodle</span></a>
    <nav class="views" aria-label="views">
      ${VIEWS.filter(([v]) => v !== 'operators' || isAdmin()).map(([v, label]) => html`<a href=${`#/${v}`} data-view=${v} aria-current=${v === current ? 'page' : undefined}>${label}</a>`)}
    </nav>
    <div class="who">
      <span class=${`live live-${state.live}`} title="the live feed" data-live=${state.live}>${LIVE_TEXT[state.live] ?? state.live}</span>
      ${state.self != null && html`<span class="muted small box-name" title="the box serving this page">${state.self.name}</span>`}
      <span class="user"><b>${state.me.username}</b> <span class="muted small">${state.me.role}</span></span>
      <button type="button" class="quiet" data-action="logout" onClick=${logout}>Sign out</button>
    </div>
  </header>`
}

function Page ({ route }) {
  switch (route.view) {
    case 'member': return html`<${MemberView} state=${state} peerId=${route.arg} />`
    case 'cameras': return html`<${CamerasView} state=${state} />`
    case 'camera': return html`<${CameraView} state=${state} id=${route.arg} />`
    case 'events': return html`<${EventsView} key=${route.key} state=${state} params=${route.params} />`
    case 'sensors': return html`<${SensorsView} state=${state} params=${route.params} />`
    case 'decisions': return html`<${DecisionsView} state=${state} />`
    case 'operators': return isAdmin() ? html`<${OperatorsView} />` : html`<section class="view"><h2>Operators</h2><p class="empty">Only admins see the accounts.</p></section>`
    default: return html`<${MeshView} state=${state} />`
  }
}

function App () {
  const [, setTick] = useState(0)
  const [route, setRoute] = useState(parseRoute())
  const [checked, setChecked] = useState(false)
  useEffect(() => subscribe(() => { setTick((t) => t + 1) }), [])
  useEffect(() => {
    const onHash = () => { setRoute(parseRoute()); window.scrollTo(0, 0) }
    addEventListener('hashchange', onHash)
    return () => { removeEventListener('hashchange', onHash) }
  }, [])
  useEffect(() => {
    api('/api/v1/identity/me', { quiet401: true })
      .then((me) => { startSession({ username: me.username, role: me.role }) }, () => {})
      .finally(() => { setChecked(true) })
  }, [])
  if (!checked) return html`<main class="loading" aria-busy="true">Noodle…</main>`
  if (state.me === null) return html`<${Login} notice=${state.notice} onLoggedIn=${startSession} />`
  return html`<${Header} route=${route} /><main class="content"><${Page} route=${route} /></main>`
}

render(html`<${App} />`, document.getElementById('app'))
