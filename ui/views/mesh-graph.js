// The mesh as a picture: members on a circle, their connections as lines, the coordinator ringed. Names are SVG
// text nodes, so they show as written. Links come from each member's `links` (peer ids it is connected to);
// before any member reports them, alive members are drawn fully connected, as a full mesh is.
import { html } from '../lib/html.js'

const byName = (a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }) || a.peerId.localeCompare(b.peerId)

export function MeshGraph ({ nodes, selfId }) {
  const list = [...nodes].sort(byName)
  const n = list.length
  if (n === 0) return null
  const r = n === 1 ? 0 : Math.max(70, Math.min(230, n * 9))
  const pos = new Map(list.map((m, i) => {
    const a = (2 * Math.PI * i) / n - Math.PI / 2
    return [m.peerId, { x: r * Math.cos(a), y: r * Math.sin(a), a }]
  }))
  const alive = (m) => m.state === 'alive' || m.state === 'suspect'
  const reported = list.some((m) => Array.isArray(m.links))
  const pairs = []
  const seen = new Set()
  const add = (a, b, kind) => {
    if (a === b || !pos.has(a) || !pos.has(b)) return
    const k = a < b ? `${a} ${b}` : `${b} ${a}`
    if (seen.has(k)) return
    seen.add(k)
    pairs.push({ a, b, kind, k })
  }
  if (reported) {
    // A dead member holds no connection, whatever a beacon said a moment ago.
    const up = new Set(list.filter(alive).map((m) => m.peerId))
    for (const m of list) if (Array.isArray(m.links) && up.has(m.peerId)) for (const p of m.links) if (up.has(String(p))) add(m.peerId, String(p), 'reported')
  } else {
    const up = list.filter(alive)
    for (let i = 0; i < up.length; i++) for (let j = i + 1; j < up.length; j++) add(up[i].peerId, up[j].peerId, 'assumed')
  }
  const dot = n > 30 ? 7 : 10
  const font = n > 30 ? 10 : 12
  const pad = 140
  const view = `${-r - pad} ${-r - 34} ${2 * (r + pad)} ${2 * (r + 34)}`
  const label = (m) => m.name.length > 18 ? `${m.name.slice(0, 17)}…` : m.name

  return html`<figure class="mesh-graph">
    <svg viewBox=${view} role="img" aria-label=${`${n} members and their connections`}>
      <g class=${pairs.length > 150 ? "links dense" : "links"}>
        ${pairs.map((p) => {
          const a = pos.get(p.a)
          const b = pos.get(p.b)
          return html`<line key=${p.k} class=${`link ${p.kind}`} x1=${a.x} y1=${a.y} x2=${b.x} y2=${b.y} />`
        })}
      </g>
      <g class="members">
        ${list.map((m) => {
          const { x, y, a } = pos.get(m.peerId)
          // Labels point away from the centre: beside members on the sides, above or below those at the top and bottom.
          const dx = n === 1 ? 0 : Math.cos(a)
          const dy = n === 1 ? 1 : Math.sin(a)
          const upright = Math.abs(dx) < 0.3
          const anchor = upright ? 'middle' : dx > 0 ? 'start' : 'end'
          const lx = x + dx * (dot + 8)
          const ly = y + dy * (dot + 8) + (upright ? (dy > 0 ? font * 0.9 : -2) : font / 3)
          return html`<a key=${m.peerId} href=${`#/member/${encodeURIComponent(m.peerId)}`} class=${`member state-${m.state.replace(/[^a-z-]/g, '')}`} data-node=${m.peerId}>
            <title>${`${m.name} (${m.state}${m.role === 'coordinator' ? ', coordinator' : ''})`}</title>
            ${m.role === 'coordinator' && html`<circle class="coordinator-ring" cx=${x} cy=${y} r=${dot + 5} />`}
            <circle class="dot" cx=${x} cy=${y} r=${dot} />
            ${m.peerId === selfId && html`<circle class="self-mark" cx=${x} cy=${y} r=${dot / 3} />`}
            <text x=${lx} y=${ly} font-size=${font} text-anchor=${anchor}>${label(m)}</text>
          </a>`
        })}
      </g>
    </svg>
    <figcaption class="legend">
      <span><i class="key alive"></i>alive</span><span><i class="key suspect"></i>suspect</span><span><i class="key dead"></i>dead</span><span><i class="key left"></i>left</span>
      <span><i class="key ring"></i>coordinator</span>${selfId != null && html`<span><i class="key self"></i>this box</span>`}
      <span class="muted">${reported ? 'lines: connections members report' : 'lines: a full mesh among live members'}</span>
    </figcaption>
  </figure>`
}
