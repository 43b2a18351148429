// The agent's API, with the session cookie. Errors keep the API's own { code, message, field }.

export class ApiError extends Error {
  constructor (status, code, message, field) {
    super(message)
    this.status = status
    this.code = code
    this.field = field
  }
}

let unauthorized = () => {}

/** What to do when a call finds the session ended (401): the app shows the login form. */
export function onUnauthorized (fn) { unauthorized = fn }

/** A JSON call: GET by default; with a body, a POST with Content-Type: application/json (the API requires it). */
export async function api (path, { method, body, quiet401 = false } = {}) {
  const init = { method: method ?? (body === undefined ? 'GET' : 'POST'), credentials: 'same-origin', cache: 'no-store', headers: { accept: 'application/json' } }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let res
  try {
    res = await fetch(path, init)
  } catch (err) {
    throw new ApiError(0, 'ERR_NETWORK', 'the agent cannot be reached')
  }
  const text = await res.text()
  let data = null
  try { data = text === '' ? null : JSON.parse(text) } catch { data = null }
  if (!res.ok) {
    const e = data !== null && typeof data === 'object' ? data.error : undefined
    const error = new ApiError(res.status, e?.code ?? `HTTP_${res.status}`, typeof e?.message === 'string' ? e.message : `HTTP ${res.status}`, e?.field)
    if (res.status === 401 && !quiet401) unauthorized()
    throw error
  }
  return data
}

/** A path with `?node=<peer id>` when it is another member's data (the agent serving the page answers for itself). */
export function onNode (path, peerId, selfId) {
  if (peerId == null || peerId === '' || peerId === selfId) return path
  return `${path}${path.includes('?') ? '&' : '?'}node=${encodeURIComponent(peerId)}`
}

/** A query string from the set values of an object. */
export function query (params) {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v))
  const s = q.toString()
  return s === '' ? '' : `?${s}`
}
