// Cameras: a tile for every camera in the mesh (data-camera), its latest frame with the boxes the agent draws
// into it, refreshed every 2 s, and its figures; a camera's own page with its events and snapshots.
import { html } from '../lib/html.js'
import { onNode } from '../lib/api.js'
import { LiveImage } from '../lib/image.js'
import { DASH, ms, num } from '../lib/format.js'
import { Empty, StateBadge } from '../lib/ui.js'
import { peerIdOf } from '../lib/store.js'
import { EventList } from './events.js'

/** The peer id of the member that runs a camera (the list names its node; a newer agent may also give its id). */
export const cameraPeer = (c) => c.peerId ?? c.nodeId ?? peerIdOf(c.node)

export const latestUrl = (c, selfId) => onNode(`/api/v1/cameras/${encodeURIComponent(c.camera)}/latest.jpg`, c.state === 'remote' ? cameraPeer(c) : undefined, selfId)

function Figures ({ c }) {
  return html`<dl class="figures">
    <div><dt>fps in</dt><dd>${num(c.fpsIn)}</dd></div>
    <div><dt>inferred</dt><dd>${num(c.fpsInferred)}</dd></div>
    <div><dt>skipped</dt><dd>${c.skipped ?? DASH}</dd></div>
    <div><dt>latency</dt><dd>${ms(c.latencyMs)}</dd></div>
    <div><dt>found</dt><dd>${c.detections ?? DASH}</dd></div>
  </dl>`
}

const byName = (a, b) => a.camera.localeCompare(b.camera)

export function CamerasView ({ state }) {
  const cameras = [...state.cameras].sort(byName)
  const selfId = state.self?.peerId
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
  const c = state.cameras.find((x) => x.camera === id)
  const selfId = state.self?.peerId
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
