// Small pieces the views share.
import { useEffect, useState } from 'preact/hooks'
import { api } from './api.js'
import { html } from './html.js'

/** The time now, refreshed every `everyMs` (for "4s ago"). */
export function useNow (everyMs = 5000) {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const t = setInterval(() => { setNow(Date.now()) }, everyMs)
    return () => { clearInterval(t) }
  }, [everyMs])
  return now
}

/**
 * One GET, again whenever `path` or `again` changes: { data, error, loading, reload }. A null path loads nothing.
 */
export function useApi (path, again = 0) {
  const [result, setResult] = useState({ data: null, error: null, loading: path !== null })
  const [round, setRound] = useState(0)
  useEffect(() => {
    if (path === null) {
      setResult({ data: null, error: null, loading: false })
      return
    }
    let gone = false
    setResult((r) => ({ ...r, loading: true }))
    api(path).then((data) => {
      if (!gone) setResult({ data, error: null, loading: false })
    }, (error) => {
      if (!gone) setResult({ data: null, error, loading: false })
    })
    return () => { gone = true }
  }, [path, again, round])
  return { ...result, reload: () => { setRound((r) => r + 1) } }
}

export const StateBadge = ({ state }) => html`<span class=${`badge state-${String(state).replace(/[^a-z-]/g, '')}`}>${state}</span>`

/** A bar for a share (0–100). */
export function Meter ({ value, label }) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return html`<span class="muted">–</span>`
  const v = Math.max(0, Math.min(100, value))
  const level = v >= 90 ? 'high' : v >= 70 ? 'mid' : 'low'
  return html`<span class="meter" title=${label}><span class=${`meter-fill ${level}`} style=${{ width: `${v}%` }}></span><span class="meter-text">${label}</span></span>`
}

export function Problem ({ error, what }) {
  if (error == null) return null
  return html`<p class="problem" role="alert">${what === undefined ? '' : `${what}: `}${error.message ?? String(error)}${error.code !== undefined ? ` (${error.code})` : ''}</p>`
}

export const Empty = ({ children }) => html`<p class="empty">${children}</p>`

/** Words as small tags (providers, work, accelerators). */
export function Tags ({ items, empty = '–' }) {
  if (!Array.isArray(items) || items.length === 0) return html`<span class="muted">${empty}</span>`
  return html`<span class="tags">${items.map((t) => html`<span class="tag">${t}</span>`)}</span>`
}
