// A uPlot time chart. uPlot (40 KB gzipped) is loaded the first time a chart is shown, not with the page.
import { useEffect, useRef, useState } from 'preact/hooks'
import { html } from './html.js'

let loading = null

function loadUPlot () {
  if (loading === null) {
    const link = document.createElement('link')
    link.rel = 'stylesheet'
    link.href = '/ui/vendor/uPlot.min.css'
    document.head.append(link)
    loading = import('uplot').then((m) => m.default)
  }
  return loading
}

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2']

/**
 * `data`: [times in seconds, ...one array of values per series]; `series`: [{ label, unit? }].
 * `format` writes an axis and legend value.
 */
export function Chart ({ title, series, data, format = (v) => String(v), height = 180, yRange, span }) {
  const box = useRef(null)
  const plot = useRef(null)
  const [failed, setFailed] = useState(null)
  const key = series.map((s) => s.label).join('\u0000')

  useEffect(() => {
    let gone = false
    let observer = null
    loadUPlot().then((UPlot) => {
      if (gone || box.current === null) return
      const width = Math.max(200, box.current.clientWidth)
      const styles = getComputedStyle(document.documentElement)
      const ink = styles.getPropertyValue('--muted').trim() || '#666'
      const grid = styles.getPropertyValue('--line').trim() || '#ddd'
      const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } }
      const opts = {
        width,
        height,
        cursor: { drag: { x: false, y: false } },
        // `span` (seconds) fixes the x axis to the last span up to now (a day of health); otherwise it fits the
        // data, widened to an hour around a single point.
        scales: {
          x: {
            time: true,
            range: (u, min, max) => {
              const now = Date.now() / 1000
              if (span !== undefined) return [now - span, now]
              if (min == null || max == null) return [now - 3600, now]
              return min === max ? [min - 1800, max + 1800] : [min, max]
            }
          },
          y: yRange === undefined ? {} : { range: yRange }
        },
        axes: [axis, { ...axis, size: 72, values: (u, vals) => vals.map(format) }],
        series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, value: (u, v) => v == null ? '–' : format(v) }))]
      }
      plot.current = new UPlot(opts, data, box.current)
      observer = new ResizeObserver(() => {
        if (plot.current !== null && box.current !== null) plot.current.setSize({ width: Math.max(200, box.current.clientWidth), height })
      })
      observer.observe(box.current)
    }).catch((err) => { setFailed(String(err?.message ?? err)) })
    return () => {
      gone = true
      if (observer !== null) observer.disconnect()
      if (plot.current !== null) plot.current.destroy()
      plot.current = null
    }
  }, [key, height])

  useEffect(() => {
    if (plot.current !== null) plot.current.setData(data)
  }, [data])

  return html`<figure class="chart">
    ${title !== undefined && html`<figcaption>${title}</figcaption>`}
    ${failed !== null ? html`<p class="muted">The chart could not be drawn: ${failed}</p>` : html`<div class="chart-box" ref=${box}></div>`}
  </figure>`
}
