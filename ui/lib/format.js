// How figures are written on the page. Every function returns text; none builds markup.

export const DASH = '–'

export function bytes (n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`
}

export function num (n, digits = 1) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH
  return Number.isInteger(n) ? String(n) : n.toFixed(digits)
}

export function pct (n) {
  return typeof n === 'number' && Number.isFinite(n) ? `${Math.round(n)}%` : DASH
}

export function ms (n) {
  return typeof n === 'number' && Number.isFinite(n) ? `${n < 10 ? n.toFixed(1) : Math.round(n)} ms` : DASH
}

export function toMs (t) {
  if (typeof t === 'number') return t
  const v = Date.parse(t)
  return Number.isNaN(v) ? NaN : v
}

/** "4s ago", "3m ago", "2h ago", "5d ago". */
export function ago (t, now = Date.now()) {
  const at = toMs(t)
  if (Number.isNaN(at)) return DASH
  const s = Math.max(0, Math.round((now - at) / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`
  return `${Math.floor(s / 86400)}d ago`
}

/** A local date and time, the date left out for today. */
export function when (t) {
  const at = toMs(t)
  if (Number.isNaN(at)) return DASH
  const d = new Date(at)
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`
}

export function duration (s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return DASH
  if (s < 60) return `${Math.round(s)}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`
}

/** The last 8 characters of a peer id, as `noodle nodes` shows it. */
export const shortId = (id) => typeof id === 'string' ? id.slice(-8) : DASH

/** An accelerator as text, whatever its shape ("cuda", or { name, kind, memoryBytes }). */
export function accelerator (a) {
  if (typeof a === 'string') return a
  if (a === null || typeof a !== 'object') return String(a)
  const name = a.name ?? a.model ?? a.kind ?? a.type ?? 'device'
  const kind = a.kind ?? a.type
  const mem = a.memoryBytes ?? a.memBytes
  return [kind !== undefined && kind !== name ? `${kind}:` : '', String(name), typeof mem === 'number' ? ` (${bytes(mem)})` : ''].join('')
}
