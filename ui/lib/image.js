// An image that refreshes itself: fetched with the session cookie every `everyMs` while it is on screen and the
// tab is visible, shown from a blob: URL (the API answers with no-store and takes no cache-busting query).
import { useEffect, useRef, useState } from 'preact/hooks'
import { html } from './html.js'

export function LiveImage ({ src, alt, everyMs = 2000, className = '' }) {
  const [url, setUrl] = useState(null)
  const [note, setNote] = useState('waiting for a frame')
  const el = useRef(null)

  useEffect(() => {
    let gone = false
    let timer = null
    let visible = true
    let current = null
    let busy = false
    const tick = async () => {
      timer = null
      if (gone) return
      if (visible && document.visibilityState === 'visible' && !busy) {
        busy = true
        try {
          const res = await fetch(src, { credentials: 'same-origin', cache: 'no-store' })
          if (res.ok && (res.headers.get('content-type') ?? '').startsWith('image/')) {
            const blob = await res.blob()
            if (!gone) {
              const next = URL.createObjectURL(blob)
              if (current !== null) URL.revokeObjectURL(current)
              current = next
              setUrl(next)
              setNote(null)
            }
          } else if (!gone) {
            let message = `HTTP ${res.status}`
            try { message = (await res.json()).error.message } catch {}
            setNote(res.status === 404 ? 'no frame yet' : message)
          }
        } catch {
          if (!gone) setNote('the agent cannot be reached')
        } finally {
          busy = false
        }
      }
      if (!gone) timer = setTimeout(tick, everyMs)
    }
    const observer = new IntersectionObserver((entries) => {
      visible = entries.some((e) => e.isIntersecting)
      if (visible && timer === null && !busy) tick()
    })
    if (el.current !== null) observer.observe(el.current)
    tick()
    return () => {
      gone = true
      observer.disconnect()
      clearTimeout(timer)
      if (current !== null) URL.revokeObjectURL(current)
    }
  }, [src, everyMs])

  return html`<div class=${`live-image ${className}`} ref=${el}>
    ${url !== null && html`<img src=${url} alt=${alt} />`}
    ${note !== null && html`<span class="image-note">${note}</span>`}
  </div>`
}
