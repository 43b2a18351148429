// The page's state: what the agent last said about the mesh, kept up to date by the live feed. Views read it
// through the App, which re-renders on every change (cheap at 50 members and 20 cameras).

const MAX_EVENTS = 300
const MAX_DECISIONS = 300

export const state = {
  me: null, // { username, role }
  self: null, // GET /api/v1/system/status of the box serving the page
  nodes: [],
  cameras: [],
  events: [],
  decisions: [],
  live: 'connecting', // connecting | open | closed
  loaded: false
}

const listeners = new Set()
let queued = false

export function subscribe (fn) {
  listeners.add(fn)
  return () => { listeners.delete(fn) }
}

/** Merge `patch` into the state and tell the listeners once per task. */
export function update (patch) {
  Object.assign(state, patch)
  if (queued) return
  queued = true
  queueMicrotask(() => {
    queued = false
    for (const l of listeners) l()
  })
}

const byStartDesc = (a, b) => String(b.start).localeCompare(String(a.start))
const byAtDesc = (a, b) => String(b.at).localeCompare(String(a.at))

/** Events upserted by id, newest first, capped. */
export function mergeEvents (list) {
  const byId = new Map(state.events.map((e) => [e.id, e]))
  for (const e of list) if (e != null && typeof e.id === 'string') byId.set(e.id, e)
  update({ events: [...byId.values()].sort(byStartDesc).slice(0, MAX_EVENTS) })
}

/** Decisions upserted by id, newest first, capped. */
export function mergeDecisions (list) {
  const byId = new Map(state.decisions.map((d) => [d.id, d]))
  for (const d of list) if (d != null && typeof d.id === 'string') byId.set(d.id, d)
  update({ decisions: [...byId.values()].sort(byAtDesc).slice(0, MAX_DECISIONS) })
}

/** The peer id of the member named `name` (cameras and events name their node). */
export function peerIdOf (name) {
  return state.nodes.find((n) => n.name === name)?.peerId
}

export const isOperator = () => state.me?.role === 'operator' || state.me?.role === 'admin'
export const isAdmin = () => state.me?.role === 'admin'
