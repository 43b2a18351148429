// The live feed: one WebSocket at /api/v1/live, reconnected with backoff. The browser does not show why an
// upgrade failed, so after a close the page asks /identity/me: a 401 there means the session ended.
import { api } from './api.js'

export function connectLive ({ onMessage, onState, onOpen, onUnauthorized }) {
  let ws = null
  let stopped = false
  let delay = 1000
  let timer = null

  const open = () => {
    onState('connecting')
    ws = new WebSocket(`${location.protocol === 'https:' ? 'wss://' : 'ws://'}${location.host}/api/v1/live`)
    ws.onopen = () => {
      delay = 1000
      onState('open')
      onOpen()
    }
    ws.onmessage = (e) => {
      if (typeof e.data !== 'string') return
      let m
      try { m = JSON.parse(e.data) } catch { return }
      if (m !== null && typeof m === 'object' && typeof m.type === 'string') onMessage(m)
    }
    ws.onclose = async () => {
      ws = null
      if (stopped) return
      onState('closed')
      try {
        await api('/api/v1/identity/me', { quiet401: true })
      } catch (err) {
        if (err.status === 401) {
          onUnauthorized()
          return
        }
      }
      if (stopped) return
      timer = setTimeout(open, delay)
      delay = Math.min(delay * 2, 30_000)
    }
  }
  open()
  return () => {
    stopped = true
    clearTimeout(timer)
    if (ws !== null) ws.close()
  }
}
