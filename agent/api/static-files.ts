import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import type { IncomingMessage } from 'node:http'
import { NoodleError } from '../../common/errors.ts'
import { BinaryBody } from './server.ts'

/** The page's own files: ui/ beside the agent's code, in the source tree and in a release alike. */
export const UI_DIR = fileURLToPath(new URL('../../ui/', import.meta.url))

/**
 * The libraries the page imports, served from the installed packages (no CDN: boxes are often offline), each
 * found as Node resolves its ES module (a package's `exports` decide where).
 */
const VENDOR: ReadonlyArray<readonly [string, string]> = [
  ['vendor/preact.mjs', 'preact'],
  ['vendor/hooks.mjs', 'preact/hooks'],
  ['vendor/htm.mjs', 'htm'],
  ['vendor/uPlot.esm.js', 'uplot/dist/uPlot.esm.js'],
  ['vendor/uPlot.min.css', 'uplot/dist/uPlot.min.css']
]

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json'
}

/** A file name the page may have: plain names, at most two folders deep (ui/views/x.js), of a type above. */
const SERVED_NAME = /^(?:[a-z0-9][a-z0-9_-]*\/){0,2}[a-z0-9][a-z0-9._-]*\.(?:html|m?js|css|svg|png|ico|json)$/i
/** All the page's files together, at most: they are held in memory, each with its gzip. */
const MAX_TOTAL_BYTES = 8 * 1024 * 1024

interface StaticFile {
  bytes: Buffer
  gzip: Buffer | null
  type: string
  etag: string
}

/** The page could not be loaded (a file unreadable, or too much of it). */
export class StaticFilesError extends NoodleError {
  constructor (message: string) {
    super('ERR_STATIC_FILES', message)
  }
}

/** The one inline script index.html may hold: the import map, which CSP allows by its hash. */
const IMPORT_MAP = /<script type="importmap">([^]*?)<\/script>/

/**
 * The web page, served by the agent itself (issue 16): index.html at `/`, its files under `/ui/`, the libraries
 * at `/ui/vendor/`. Every file is read at start into memory with its gzip (a few hundred KB), so a request reads
 * no disk and no path from a request ever reaches the file system: a name is looked up in the table, or is
 * not found. Every answer carries a strict Content-Security-Policy (no inline script but the import map, no
 * framing), so what a member or a sensor names can only ever be shown as text.
 */
export class StaticFiles {
  private readonly dir: string
  private files = new Map<string, StaticFile>()
  private csp = ''

  constructor (components: { dir?: string } = {}) {
    this.dir = components.dir ?? UI_DIR
  }

  async start (): Promise<void> {
    const files = new Map<string, StaticFile>()
    let total = 0
    const add = (name: string, bytes: Buffer): void => {
      total += bytes.length
      if (total > MAX_TOTAL_BYTES) throw new StaticFilesError(`the page's files are over ${MAX_TOTAL_BYTES} bytes`)
      const type = TYPES[name.slice(name.lastIndexOf('.')).toLowerCase()] ?? 'application/octet-stream'
      const gzip = type.startsWith('image/png') ? null : gzipSync(bytes, { level: 9 })
      files.set(name, { bytes, gzip: gzip !== null && gzip.length < bytes.length ? gzip : null, type, etag: `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 22)}"` })
    }
    for (const name of await this.pageFiles()) add(name, await readFile(join(this.dir, name)))
    for (const [name, module] of VENDOR) add(name, await readFile(fileURLToPath(import.meta.resolve(module))))
    const index = files.get('index.html')
    const importMap = index === undefined ? undefined : IMPORT_MAP.exec(index.bytes.toString('utf8'))?.[1]
    const mapHash = importMap === undefined ? '' : ` 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`
    this.csp = `default-src 'self'; script-src 'self'${mapHash}; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; ` +
      'frame-ancestors \'none\'; base-uri \'none\'; form-action \'self\'; object-src \'none\''
    this.files = files
  }

  stop (): void {
    this.files = new Map()
  }

  /** The page's file names (relative to its folder, with `/`), a missing folder being an empty page. */
  private async pageFiles (): Promise<string[]> {
    let entries
    try {
      entries = await readdir(this.dir, { recursive: true, withFileTypes: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new StaticFilesError(`cannot list the page's files in ${this.dir}: ${(err as Error).message}`)
    }
    return entries
      .filter((e) => e.isFile())
      .map((e) => relative(this.dir, join(e.parentPath, e.name)).split(sep).join('/'))
      .filter((name) => SERVED_NAME.test(name))
      .sort()
  }

  /** Names served, for tests and `noodle ui`. */
  names (): string[] {
    return [...this.files.keys()]
  }

  /**
   * The answer for `name` (`index.html`, `app.js`, `vendor/htm.mjs`), or undefined: gzip where the client takes
   * it, 304 where it has this very file.
   */
  answer (name: string, req: IncomingMessage): BinaryBody | undefined {
    const file = this.files.get(name)
    if (file === undefined) return undefined
    const headers: Record<string, string> = {
      etag: file.etag,
      // Kept, but checked each time: an upgraded agent's page is never mixed with the old one's files.
      'cache-control': 'no-cache',
      'content-security-policy': this.csp,
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      vary: 'Accept-Encoding'
    }
    if (req.headers['if-none-match'] === file.etag) return new BinaryBody(new Uint8Array(0), file.type, headers, 304)
    const gzip = file.gzip !== null && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '')
    if (gzip) headers['content-encoding'] = 'gzip'
    return new BinaryBody(gzip ? file.gzip as Buffer : file.bytes, file.type, headers)
  }
}
