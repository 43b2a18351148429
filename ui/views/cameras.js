// Cameras: a tile for every camera in the mesh (data-camera), its latest frame with the boxes the agent draws
// into it, refreshed every 2 s, and its figures; a camera's own page with its events and snapshots.
import { useEffect, useState } from 'preact/hooks'
import { html } from '../lib/html.js'
import { api, onNode } from '../lib/api.js'
import { LiveImage } from '../lib/image.js'
import { DASH, ms, num } from '../lib/format.js'
import { Empty, StateBadge } from '../lib/ui.js'
import { peerIdOf } from '../lib/store.js'
import { EventList } from './events.js'

/**
 * The peer id of the member that runs a camera, as the agent lists it: never looked up by name (names need not be
 * unique, and a member may take another's). An agent before peer ids were listed: by name, as a last resort.
 */
export const cameraPeer = (c) => c.peerId ?? peerIdOf(c.node)

export const latestUrl = (c, selfId) => onNode(`/api/v1/cameras/${encodeURIComponent(c.camera)}/latest.jpg`, c.state === 'remote' || c.remote === true ? cameraPeer(c) : undefined, selfId)

function Figures ({ c }) {
  return html`<dl class="figures">
    <div><dt>fps in</dt><dd>${num(c.fpsIn)}</dd></div>
    <div><dt>inferred</dt><dd>${num(c.fpsInferred)}</dd></div>
    <div><dt>skipped</dt><dd>${c.skipped ?? DASH}</dd></div>
    <div><dt>latency</dt><dd>${ms(c.latencyMs)}</dd></div>
    <div><dt>found</dt><dd>${c.detections ?? DASH}</dd></div>
  </dl>`
}

const byName = (a, b) => a.camera.localeCompare(b.camera, undefined, { numeric: true })

/**
 * The figures of the cameras other members run. This box lists them as `remote`, without figures; the member
 * that runs them answers GET /api/v1/cameras?node=<its peer id>, asked at the pace of the frames (every 4 s)
 * while a camera view is open, never for more than the members that run cameras.
 */
function useRemoteFigures (cameras, selfId) {
  const peers = [...new Set(cameras.filter((c) => c.state === 'remote').map(cameraPeer).filter((p) => p !== undefined && p !== selfId))].sort()
  const key = peers.join(' ')
  const [figures, setFigures] = useState(new Map())
  useEffect(() => {
    if (peers.length === 0) return
    let gone = false
    let timer = null
    const ask = async () => {
      if (document.visibilityState === 'visible') {
        const answers = await Promise.allSettled(peers.map((p) => api(onNode('/api/v1/cameras', p, selfId))))
        if (gone) return
        // A member's figures count only for the cameras this box lists as running there: another member cannot
        // put its figures (or its errors) on a camera that runs elsewhere by naming its id.
        const next = new Map()
        answers.forEach((a, i) => {
          if (a.status !== 'fulfilled' || !Array.isArray(a.value)) return
          for (const c of a.value) {
            if (c.state === 'remote') continue
            const listed = cameras.find((l) => l.camera === c.camera && l.state === 'remote' && cameraPeer(l) === peers[i])
            if (listed !== undefined) next.set(c.camera, c)
          }
        })
        setFigures(next)
      }
      if (!gone) timer = setTimeout(ask, 4000)
    }
    ask()
    return () => { gone = true; clearTimeout(timer) }
  }, [key, selfId])
  return (c) => {
    if (c.state !== 'remote') return c
    const f = figures.get(c.camera)
    return f === undefined ? c : { ...f, node: c.node, remote: true }
  }
}

export function CamerasView ({ state }) {
  const selfId = state.self?.peerId
  const withFigures = useRemoteFigures(state.cameras, selfId)
  const cameras = [...state.cameras].sort(byName).map(withFigures)
  return html`<section class="view cameras-view">
    <header class="view-head">
      <h2>Cameras</h2>
      <p class="summary"><span><b>${cameras.length}</b> cameras</span><span>${cameras.filter((c) => c.state === 'running' || c.state === 'remote').length} running</span></p>
    </header>
    ${cameras.length === 0 && html`<${Empty}>No camera runs in the mesh.<//>`}
    <div class="camera-grid">
      ${cameras.map((c) => html`<article class="camera-tile" key=${c.camera} data-camera=${c.camera} data-state=${c.state}>
        <a class="tile-image" href=${`#/camera/${encodeURIComponent(c.camera)}`} aria-label=${`camera ${c.camera}`}>
          <${LiveImage} src=${latestUrl(c, selfId)} alt=${`latest frame of ${c.camera}`} />
        </a>
        <div class="tile-body">
          <h3><a href=${`#/camera/${encodeURIComponent(c.camera)}`}>${c.camera}</a></h3>
          <p class="muted small">on <b>${c.node}</b> <${StateBadge} state=${c.state} />${c.error != null && html` <span class="warn">${c.error}</span>`}</p>
          <${Figures} c=${c} />
        </div>
      </article>`)}
    </div>
  </section>`
}

export function CameraView ({ state, id }) {
  const selfId = state.self?.peerId
  const withFigures = useRemoteFigures(state.cameras.filter((x) => x.camera === id), selfId)
  const listed = state.cameras.find((x) => x.camera === id)
  const c = listed === undefined ? undefined : withFigures(listed)
  if (c === undefined) {
    return html`<section class="view"><p class="crumbs"><a href="#/cameras" data-view="cameras">Cameras</a> ›</p><h2>${id}</h2>
      <${Empty}>${state.loaded ? 'No such camera in the mesh now.' : 'Loading…'}<//></section>`
  }
  const peer = cameraPeer(c)
  return html`<section class="view camera-view" data-camera=${c.camera}>
    <header class="view-head">
      <p class="crumbs"><a href="#/cameras" data-view="cameras">Cameras</a> ›</p>
      <h2>${c.camera}</h2>
      <p class="summary"><${StateBadge} state=${c.state} />
        <span>on ${peer === undefined ? c.node : html`<a href=${`#/member/${encodeURIComponent(peer)}`}>${c.node}</a>`}</span>
        ${c.model != null && html`<span class="muted">model <span class="mono">${c.model}</span></span>`}
        ${c.detector != null && html`<span class="muted">detector ${c.detector}</span>`}
        ${c.decoder != null && html`<span class="muted">decoder ${c.decoder}</span>`}</p>
      ${c.error != null && html`<p class="warn">${c.error}</p>`}
    </header>
    <div class="camera-main">
      <${LiveImage} src=${latestUrl(c, selfId)} alt=${`latest frame of ${c.camera}`} className="large" />
      <div>
        <${Figures} c=${c} />
        ${c.source != null && html`<p class="muted small">source <span class="mono">${c.source}</span></p>`}
        <p class="small"><a href=${`#/events?camera=${encodeURIComponent(c.camera)}`} data-view="events">All its events</a></p>
      </div>
    </div>
    <h3>Its events</h3>
    <${EventList} state=${state} filters=${{ camera: c.camera }} limit=${30} />
  </section>`
}
