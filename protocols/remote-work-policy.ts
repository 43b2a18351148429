import { canonicalHost, isLocalHost } from './hosts.ts'
import { MODEL_ID } from './models.ts'
import type { RemoteWorkAccepts, WorkItem } from './work.ts'

/**
 * What a box opens and reads for work homed on another box: its operator's `remoteWork` setting, sent in its
 * beacon as `accepts`. The swarm key admits a box to the mesh; it grants no say over another box's files,
 * devices or network reach, so work that comes from the mesh runs only within this policy. The coordinator
 * places work only where the policy allows it (placement.ts), and the target checks again before it runs it.
 * Work configured on the box itself is the operator's own and is not checked.
 */

/** FFmpeg lavfi sources that generate frames or sound and read nothing: the demo and tests run on them. */
export const LAVFI_GENERATORS: ReadonlySet<string> = new Set([
  'testsrc', 'testsrc2', 'smptebars', 'smptehdbars', 'color', 'rgbtestsrc', 'yuvtestsrc', 'mandelbrot', 'life',
  'cellauto', 'sine', 'anullsrc', 'nullsrc', 'allrgb', 'allyuv', 'haldclutsrc', 'pal75bars', 'pal100bars'
])

/** Generators that can also seed themselves from a file (`filename`, `f`, or the first argument unnamed). */
const READS_FILE_OPTION: ReadonlySet<string> = new Set(['life', 'cellauto'])
const FILE_OPTIONS: ReadonlySet<string> = new Set(['filename', 'f'])
/** A filter's name (and `@instance`), then optionally `=` and its arguments: plain characters only, no quoting. */
const FILTER = /^([a-z0-9_]+)(?:@[A-Za-z0-9_]+)?(?:=([A-Za-z0-9._:=+\-/#]*))?$/

/**
 * Why an FFmpeg filter graph (the part after `lavfi:`) is not a pure generator, or null when it is. Every filter
 * of every chain must be on the allow list: anything else (`movie`, `amovie`, a filter that writes, an escape,
 * quotes, link labels, `sws_flags`) is refused, since one filter that opens a file is enough to read it.
 */
export function lavfiGraphProblem (graph: string): string | null {
  if (graph === '') return 'the lavfi graph is empty'
  for (const filter of graph.split(/[;,]/)) {
    const match = FILTER.exec(filter)
    if (match === null) return `lavfi filter ${JSON.stringify(filter)} is not a plain generator (no quotes, escapes, labels or spaces)`
    const name = match[1] as string
    if (!LAVFI_GENERATORS.has(name)) return `lavfi filter "${name}" is not a generator that reads nothing`
    if (READS_FILE_OPTION.has(name) && match[2] !== undefined && match[2] !== '') {
      for (const option of match[2].split(':')) {
        const key = option.includes('=') ? option.slice(0, option.indexOf('=')) : null
        if (key === null || FILE_OPTIONS.has(key)) return `lavfi filter "${name}" may read a file: only named options other than filename are accepted`
      }
    }
  }
  return null
}

/**
 * Why `accepts` does not let a box open `source` for another home, or null when it does. A policy entry is a
 * scheme (`rtsp://`: any host but this box and its link), a scheme and host (`rtsp://192.0.2.10`, with `:port` to
 * pin the port; the one way to admit a loopback or link-local host), or `lavfi:` (generators only). Hosts are
 * compared as a resolver reads them (`rtsp://2130706433` is `rtsp://127.0.0.1`). Files, devices and anything that
 * is not a URL never match.
 */
/** scheme://host[:port][/path][?query], in characters every URL reader splits the same way. */
const PLAIN_URL = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[A-Za-z0-9._~:[\]-]+(?:[/?][A-Za-z0-9._~!$&'()*+,;=:%/?-]*)?$/

export function sourceRefusal (source: string, sources: readonly string[]): string | null {
  if (source.startsWith('lavfi:')) {
    if (!sources.includes('lavfi:')) return 'lavfi sources are not accepted from other homes'
    return lavfiGraphProblem(source.slice('lavfi:'.length))
  }
  let url: URL
  try {
    url = new URL(source)
  } catch {
    return `${JSON.stringify(source.slice(0, 80))} is not a URL (files and devices are opened only for work homed here)`
  }
  if (url.username !== '' || url.password !== '') return 'the source carries credentials (they never travel between boxes)'
  const scheme = url.protocol.slice(0, -1)
  const host = canonicalHost(url.hostname)
  const local = isLocalHost(host)
  const allowed = sources.some((entry) => {
    if (!entry.startsWith(`${scheme}://`)) return false
    const rest = entry.slice(scheme.length + 3)
    if (rest === '') return !local
    const [entryHost, entryPort] = splitHostPort(rest)
    return canonicalHost(entryHost) === host && (entryPort === undefined || entryPort === (url.port === '' ? undefined : url.port))
  })
  // The host checked must be the one FFmpeg connects to: where URL readers disagree (`\`, `@`, `#`, spaces,
  // controls: `http://a\@b/` is host a to WHATWG and host b to FFmpeg), the source is refused.
  if (allowed) return PLAIN_URL.test(source) ? null : `${JSON.stringify(source.slice(0, 80))} is not a plain URL (no "@", "\\", "#", spaces or control characters)`
  return local
    ? `${scheme}://${host} is this box or its link (loopback, link-local): opened for other homes only where remoteWork.sources names that host`
    : `${scheme}://${host} is not among the sources this box accepts from other homes`
}

function splitHostPort (hostPort: string): [string, string | undefined] {
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostPort)
  return [match?.[1] ?? hostPort, match?.[2]]
}

export interface RemoteWorkFacts {
  /** The work's home has credentials for it (its beacon lists the camera id): only a box that has them may run it. */
  needsCredentials: boolean
  /** The size of the work's model where known (registered here). */
  modelBytes?: number | undefined
}

/**
 * Why a box with policy `accepts` would refuse to run `item` homed on another box, or null when it would run it.
 * The coordinator asks this of every candidate before placing work; the target asks it again of itself.
 */
export function remoteWorkRefusal (accepts: RemoteWorkAccepts, item: WorkItem, facts: RemoteWorkFacts): string | null {
  if (item.pinned) return 'the work is pinned to its home node'
  if (item.source !== undefined) {
    const problem = sourceRefusal(item.source, accepts.sources)
    if (problem !== null) return problem
  }
  if (item.model !== undefined && !MODEL_ID.test(item.model)) return 'its model is not named by id (a path names a file on its home)'
  if (facts.modelBytes !== undefined && facts.modelBytes > accepts.maxModelBytes) {
    return `its model is ${facts.modelBytes} bytes, over the ${accepts.maxModelBytes} this box accepts`
  }
  if (facts.needsCredentials && !accepts.credentials.includes(item.id)) return `this box has no credentials for camera ${item.id}`
  return null
}
