import { chmodSync, unlinkSync } from 'node:fs'
import { readSmallFile } from '../../common/files.ts'
import { createConnection } from 'node:net'
import type { Socket } from 'node:net'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import { createServer as createTlsServer } from 'node:https'
import { AddressLimit } from '../../common/address-limit.ts'
import { nodeHttp } from '../../common/http.ts'
import type { OperatorRole } from '../../protocols/identity.ts'
import type { z } from 'zod'
import { issueKey } from '../../protocols/codec.ts'
import { BadRequestError, MethodNotAllowedError, NoodleError, RequestRefusedError } from '../../common/errors.ts'
import type { Logger } from '../../common/logger.ts'

/**
 * Who is asking: anyone on the trusted local socket, or an operator with a token (or the page's session cookie)
 * on a TCP listener; `secure` when that listener is HTTPS (a session cookie is then marked Secure).
 */
export type Caller = { local: true } | { local: false, username: string | null, role: OperatorRole | null, secure?: boolean }

/**
 * A route's answer (JSON, or a JsonReply, TextBody or BinaryBody); `query` holds the request target's query
 * parameters (empty unless the route takes some); `params` the path's `{name}` segments, percent-decoded, unchecked.
 */
export type RouteHandler = (req: IncomingMessage, caller: Caller, query?: URLSearchParams, params?: Record<string, string>) => unknown | Promise<unknown>

/** Who may call a route over TCP: anyone (login), or operators of at least this role. */
export type Access = 'public' | OperatorRole
const RANK: Record<OperatorRole, number> = { viewer: 0, operator: 1, admin: 2 }

/** How a TCP listener judges its callers: who a token names, and the role each route needs. */
export interface Judge {
  authenticate: (token: string) => { username: string, role: OperatorRole } | undefined
  access: (route: string) => Access
}

/** The HTTPS listener: where, its certificate, and how tokens and routes are judged. */
export interface RemoteAccess extends Judge {
  host: string
  port: number
  certFile: string
  keyFile: string
  /** Connections open at once, at most; more are closed at once (and counted), so sockets cannot run out. */
  maxConnections: number
  /** Connections open at once from one address, at most: one client cannot fill maxConnections by itself. */
  maxConnectionsPerAddress: number
}

/**
 * The page and the API over plain HTTP, for a box without certificates (`ui.http`): on 127.0.0.1 only, reached
 * through an SSH tunnel; judged as the HTTPS listener is (a session or a token for every API call).
 */
export interface LoopbackAccess extends Judge {
  port: number
  maxConnections: number
}

/** Where WebSocket upgrades go (the live feed): its path, and what takes a judged caller's connection. */
export interface LiveUpgrades {
  readonly path: string
  accept: (req: IncomingMessage, socket: Duplex, head: Buffer, caller: { username: string, role: OperatorRole }) => void
}

/** The cookie the page's session rides in (`POST /api/v1/identity/login` with `"session": true`). */
export const SESSION_COOKIE = 'noodle_session'
/** What a token looks like (identity/operators.ts): anything else in the cookie is not looked up. */
const TOKEN_SHAPE = /^nd_[A-Za-z0-9_-]{20,100}$/

/**
 * A TCP listener's rules: how it judges, whether it is HTTPS, and whether it is the loopback one, whose Host must
 * be a loopback name (DNS rebinding: a page of another site whose name was made to resolve to 127.0.0.1 sends its
 * own name as Host).
 */
interface Listener { judge: Judge, secure: boolean, loopback?: boolean }

/**
 * Whether a request names the box by a loopback name (`127.x.x.x`, `localhost`, `[::1]`), at any port: an SSH
 * tunnel's local port may differ from ours, and tunnels to several boxes may each take a loopback address of its
 * own (cookies are not kept apart by port).
 */
function loopbackHost (req: IncomingMessage): boolean {
  return /^(?:127(?:\.\d{1,3}){3}|localhost|\[::1\])(?::\d{1,5})?$/.test(req.headers.host ?? '')
}

/** A route's JSON answer with a status other than 200 (201 Created), or with headers of its own (a cookie). */
export class JsonReply {
  readonly status: number
  readonly body: unknown
  readonly headers: Readonly<Record<string, string>>

  constructor (status: number, body: unknown, headers: Record<string, string> = {}) {
    this.status = status
    this.body = body
    this.headers = headers
  }
}

/** A route's answer that is not JSON (Prometheus's text format). */
export class TextBody {
  readonly text: string
  readonly contentType: string

  constructor (text: string, contentType: string) {
    this.text = text
    this.contentType = contentType
  }
}

/**
 * A route's answer in bytes (a snapshot's JPEG, a file of the page): sent as it is, with its type and length,
 * and the headers and status given (the page's: its caching, its Content-Security-Policy, 304).
 */
export class BinaryBody {
  readonly bytes: Uint8Array
  readonly contentType: string
  readonly headers: Readonly<Record<string, string>>
  readonly status: number

  constructor (bytes: Uint8Array, contentType: string, headers: Record<string, string> = {}, status = 200) {
    this.bytes = bytes
    this.contentType = contentType
    this.headers = headers
    this.status = status
  }
}

/**
 * Headers on every answer, whatever its kind: no browser guesses another type than the one sent (an image read as
 * HTML), and nothing is kept by a cache (answers say what is now, and may be a camera's frame).
 */
const ANSWER_HEADERS: Readonly<Record<string, string>> = { 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' }

/** Every answer goes out here: its status, type and bytes, with ANSWER_HEADERS (a page's file caches as it says). */
function sendBytes (res: ServerResponse, status: number, contentType: string, body: string | Uint8Array, headers: Readonly<Record<string, string>> = {}): void {
  res.writeHead(status, { ...ANSWER_HEADERS, ...headers, 'content-type': contentType, 'content-length': typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength })
  res.end(body)
}

/** Unified error body, the same for every endpoint: `{ "error": { "code", "message", "field"? } }`. */
function sendError (res: ServerResponse, status: number, code: string, message: string, field?: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: field === undefined ? { code, message } : { code, message, field } }, headers)
}

/** Request bodies are small JSON objects; anything bigger is refused before it is read. */
const MAX_BODY_BYTES = 64 * 1024
/** No request body needs more nesting than this; deeper JSON is refused before it is parsed. */
const MAX_JSON_DEPTH = 32
/** Request targets are short fixed paths; a longer one is refused (414). */
const MAX_TARGET_BYTES = 2048
/** The request line and headers together (Node's default is 16 KiB; a token and a few headers need far less). */
const MAX_HEADER_BYTES = 8 * 1024
/** How often Node checks for clients that are slow to send their headers or body. */
const TIMEOUT_CHECK_MS = 1_000
/** An idle HTTPS connection is closed after this long: a tool's next request comes at once, or not soon. */
export const KEEP_ALIVE_MS = 2_000
/** Requests one HTTPS connection may carry; then it is closed, so no connection is held for good. */
export const MAX_REQUESTS_PER_SOCKET = 100

/** What the refusal counter is called: `noodle_api_refused_total{reason}`, the reason being the error's code. */
export const API_REFUSED_METRIC = 'noodle_api_refused_total'
/** Requests the agent failed to answer (5xx: a bug, or 503 while no coordinator is known), by code. */
export const API_FAILED_METRIC = 'noodle_api_failed_total'

/** `ERR_BAD_TARGET` → `bad_target`: the label a refusal is counted under. */
export function refusalReason (code: string): string {
  return code.replace(/^ERR_/, '').toLowerCase()
}

/** Checks a request body against its schema; a failure names the field. */
export function parseBody<S extends z.ZodType> (schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body)
  if (result.success) return result.data
  const issue = result.error.issues[0] as z.core.$ZodIssue
  const field = issueKey(issue)
  throw new BadRequestError(issue.code === 'unrecognized_keys' ? 'is not a known field' : issue.message, field === '' ? undefined : field)
}

/** How deeply JSON text nests its objects and arrays (brackets inside strings do not count). */
export function jsonDepth (text: string): number {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // a backslash: the next character is escaped
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x7b || c === 0x5b) {
      deepest = Math.max(deepest, ++depth)
    } else if (c === 0x7d || c === 0x5d) {
      depth--
    }
  }
  return deepest
}

function bodyTooLarge (): RequestRefusedError {
  return new RequestRefusedError(413, 'ERR_BODY_TOO_LARGE', `the request body is over ${MAX_BODY_BYTES} bytes`)
}

/** Reads a request's JSON body (an object), refusing oversized, deeply nested, non-JSON and non-object bodies. */
export async function readJsonBody (req: IncomingMessage): Promise<Record<string, unknown>> {
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) throw bodyTooLarge()
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) throw bodyTooLarge()
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw new BadRequestError(`the request body nests more than ${MAX_JSON_DEPTH} levels`)
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new BadRequestError('the request body is not JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequestError('the request body must be a JSON object')
  return body as Record<string, unknown>
}

function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendBytes(res, status, 'application/json', JSON.stringify(body), headers)
}

function addressOf (server: Server | undefined): { host: string, port: number } | undefined {
  const address = server?.address()
  return address == null || typeof address === 'string' ? undefined : { host: address.address, port: address.port }
}

/** Whether something answers on the socket: a live agent, as opposed to a file left by one that crashed. */
function socketIsLive (path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path)
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

/** How long a client may take to send its headers, and its whole request, before the server closes it. */
export interface ApiTimeouts { headersMs: number, requestMs: number }

/** Defaults: generous for a person at a terminal, short enough that idle sockets do not pile up. */
export const DEFAULT_API_TIMEOUTS: ApiTimeouts = { headersMs: 10_000, requestMs: 30_000 }

/** The answers to clients whose request Node could not parse, by the parser's error code. */
const CLIENT_ERRORS: Record<string, { status: number, code: string, message: string }> = {
  HPE_HEADER_OVERFLOW: { status: 431, code: 'ERR_HEADERS_TOO_LARGE', message: `the request line and headers are over ${MAX_HEADER_BYTES} bytes` },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, code: 'ERR_REQUEST_TIMEOUT', message: 'the request was not sent in time' }
}
const MALFORMED = { status: 400, code: 'ERR_MALFORMED', message: 'the request is not well-formed HTTP' }

/**
 * The path a request target names, and its query. Only origin-form targets (`/api/v1/...`) are taken;
 * absolute-form (`http://host/...`) and asterisk-form (`*`) are refused, as is bad percent-encoding. A query is
 * refused later by every route that takes no parameters (a mistake or a probe there).
 */
export function requestTarget (target: string): { path: string, rawPath: string, query: URLSearchParams | null } {
  if (Buffer.byteLength(target) > MAX_TARGET_BYTES) throw new RequestRefusedError(414, 'ERR_TARGET_TOO_LONG', `the request target is over ${MAX_TARGET_BYTES} bytes`)
  if (!target.startsWith('/')) throw new RequestRefusedError(400, 'ERR_BAD_TARGET', 'the request target must be a path such as /api/v1/system/status')
  const mark = target.indexOf('?')
  const query = mark < 0 ? null : target.slice(mark + 1)
  try {
    // URLSearchParams would read bad percent-encoding as it stands: checked here, as the path's is.
    if (query !== null) decodeURIComponent(query.replace(/\+/g, ' '))
    const rawPath = mark < 0 ? target : target.slice(0, mark)
    return { path: decodeURIComponent(rawPath), rawPath, query: query === null ? null : new URLSearchParams(query) }
  } catch {
    throw new RequestRefusedError(400, 'ERR_BAD_TARGET', 'the request target has bad percent-encoding')
  }
}

/** A route with `{name}` segments (`GET /api/v1/events/{id}/snapshot.jpg`), split for matching. */
interface PathTemplate {
  route: string
  method: string
  segments: string[]
}

function pathTemplate (route: string): PathTemplate | undefined {
  const [method = '', path = ''] = route.split(' ')
  return path.includes('{') ? { route, method, segments: path.split('/') } : undefined
}

/**
 * The `{name}` segments of a path that fits a template, or undefined. Matched on the path as sent, segment by
 * segment, each decoded on its own: `..%2F..%2Fetc` is one segment (which its route then refuses by name), never
 * three. A segment is never empty.
 */
function matchTemplate (template: PathTemplate, rawSegments: string[]): Record<string, string> | undefined {
  if (rawSegments.length !== template.segments.length) return undefined
  const params: Record<string, string> = Object.create(null) as Record<string, string>
  for (let i = 0; i < rawSegments.length; i++) {
    const want = template.segments[i] as string
    const got = rawSegments[i] as string
    if (want.startsWith('{') && want.endsWith('}')) {
      if (got === '') return undefined
      params[want.slice(1, -1)] = decodeURIComponent(got)
    } else if (want !== got) {
      return undefined
    }
  }
  return params
}

/** State-changing requests must say they carry JSON: a cross-site form post cannot, so it is refused here. */
function checkContentType (req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/json') {
    throw new RequestRefusedError(415, 'ERR_CONTENT_TYPE', `${req.method ?? ''} requests must have Content-Type: application/json`)
  }
}

/** The token of an `Authorization: Bearer <token>` header, if the request has one. */
function bearerToken (req: IncomingMessage): string | undefined {
  return /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1]
}

/**
 * The page's session token, from its cookie: the first of a token's shape. (Another host of the same site may set
 * a cookie of the same name for a path of ours: one that is no token is passed over, not taken for the session.)
 */
export function sessionToken (req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=')
    if (at === -1 || part.slice(0, at).trim() !== SESSION_COOKIE) continue
    const value = part.slice(at + 1).trim()
    if (TOKEN_SHAPE.test(value)) return value
  }
  return undefined
}

/** A request's token: its bearer header's, else its session cookie's (and which it was). */
export function requestToken (req: IncomingMessage): { token: string, fromCookie: boolean } | undefined {
  const bearer = bearerToken(req)
  if (bearer !== undefined) return { token: bearer, fromCookie: false }
  const cookie = sessionToken(req)
  return cookie === undefined ? undefined : { token: cookie, fromCookie: true }
}

/**
 * Whether a browser sent the request from the page itself: its Origin names the host it was sent to. A cookie
 * goes with every request to its host, whoever's page makes it: what changes state, and the live feed, must
 * come from ours (SameSite=Strict says the same; this does not rest on the browser alone).
 */
function fromOwnPage (req: IncomingMessage): boolean {
  const origin = req.headers.origin
  if (origin === undefined) return false
  try {
    return new URL(origin).host === req.headers.host
  } catch {
    return false
  }
}

/** A JSON error answer written straight to a socket whose request Node could not parse. */
function rawErrorAnswer (status: number, code: string, message: string): string {
  const text = JSON.stringify({ error: { code, message } })
  const headers = Object.entries(ANSWER_HEADERS).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  return `HTTP/1.1 ${status} ${nodeHttp().STATUS_CODES[status] ?? code}\r\n${headers}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`
}

/**
 * The control API: HTTP+JSON on a Unix socket (mode 0660), so only the agent's user and group reach it and
 * nothing on the network does; and, when configured, the same routes over HTTPS for remote tools, where every
 * request needs a token and a role that allows it (`access`). Nothing a client sends can end the process: every
 * failure, from parsing the target to writing the answer, becomes a JSON error, counted by reason (`onRefused`).
 */
export class ControlApi {
  private readonly socketPath: string
  private readonly routes: Map<string, RouteHandler>
  /** The routes with `{name}` segments, tried in turn when no fixed route fits. */
  private readonly templates: PathTemplate[]
  /** The routes that take query parameters: every other refuses a query. */
  private readonly queryRoutes: ReadonlySet<string>
  private readonly log: Logger
  private readonly remote: RemoteAccess | undefined
  private readonly loopback: LoopbackAccess | undefined
  private readonly live: LiveUpgrades | undefined
  private readonly listening: { tcp?: { host: string, port: number }, loopback?: { host: string, port: number } } | undefined
  private readonly timeouts: ApiTimeouts
  private readonly onRefused: (reason: string) => void
  private readonly onFailed: (reason: string) => void
  private server: Server | undefined
  private tlsServer: Server | undefined
  private loopbackServer: Server | undefined
  private readonly refusedSockets = new WeakSet<Duplex>()
  /** HTTPS connections open, by remote address (an address leaves when its last connection closes). */

  constructor (components: {
    socketPath: string
    routes: Record<string, RouteHandler>
    queryRoutes?: ReadonlySet<string>
    log: Logger
    remote?: RemoteAccess
    loopback?: LoopbackAccess
    live?: LiveUpgrades
    /** Told where the TCP listeners are bound, once they are (what `noodle ui` prints). */
    listening?: { tcp?: { host: string, port: number }, loopback?: { host: string, port: number } }
    timeouts?: ApiTimeouts
    onRefused?: (reason: string) => void
    onFailed?: (reason: string) => void
  }) {
    this.socketPath = components.socketPath
    this.routes = new Map(Object.entries(components.routes))
    this.templates = [...this.routes.keys()].flatMap((route) => pathTemplate(route) ?? [])
    this.queryRoutes = components.queryRoutes ?? new Set()
    this.log = components.log
    this.remote = components.remote
    this.loopback = components.loopback
    this.live = components.live
    this.listening = components.listening
    this.timeouts = components.timeouts ?? DEFAULT_API_TIMEOUTS
    this.onRefused = components.onRefused ?? (() => {})
    this.onFailed = components.onFailed ?? (() => {})
  }

  /** The HTTPS listener's address once started (its port, when configured as 0). */
  get tcpAddress (): { host: string, port: number } | undefined {
    return addressOf(this.tlsServer)
  }

  /** The loopback HTTP listener's address once started (`ui.http`). */
  get loopbackAddress (): { host: string, port: number } | undefined {
    return addressOf(this.loopbackServer)
  }

  /** Options both listeners share: small headers, and slow clients cut off (the socket's too: a stuck tool). */
  private get serverOptions (): { maxHeaderSize: number, headersTimeout: number, requestTimeout: number, connectionsCheckingInterval: number } {
    return {
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: this.timeouts.headersMs,
      requestTimeout: this.timeouts.requestMs,
      connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_MS, this.timeouts.headersMs)
    }
  }

  async start (): Promise<void> {
    if (await socketIsLive(this.socketPath)) {
      throw new NoodleError('ERR_AGENT_RUNNING', `an agent is already running on ${this.socketPath}`)
    }
    try { unlinkSync(this.socketPath) } catch { /* no stale socket */ }
    const server = nodeHttp().createServer(this.serverOptions, (req, res) => { this.serve(req, res, undefined) })
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => { this.refuseClient(err, socket) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      // umask would otherwise decide the mode; 0660 lets the agent's group (the CLI's operators) in.
      server.listen(this.socketPath, () => { server.off('error', reject); resolve() })
    })
    chmodSync(this.socketPath, 0o660)
    this.server = server
    this.log.info({ socket: this.socketPath }, 'control API listening')
    if (this.remote !== undefined) await this.listenTls(this.remote)
    if (this.loopback !== undefined) await this.listenLoopback(this.loopback)
    if (this.listening !== undefined) {
      this.listening.tcp = this.tcpAddress
      this.listening.loopback = this.loopbackAddress
    }
  }

  private async listenLoopback (loopback: LoopbackAccess): Promise<void> {
    const listener: Listener = { judge: loopback, secure: false, loopback: true }
    const server = nodeHttp().createServer(this.serverOptions, (req, res) => { this.serve(req, res, listener) })
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => { this.refuseClient(err, socket) })
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { this.upgrade(req, socket, head, listener) })
    server.maxConnections = loopback.maxConnections
    server.keepAliveTimeout = KEEP_ALIVE_MS
    server.maxRequestsPerSocket = MAX_REQUESTS_PER_SOCKET
    server.on('drop', () => { this.onRefused('connections') })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      // Loopback only, whatever else is configured: plain HTTP must never face the network.
      server.listen(loopback.port, '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
    this.loopbackServer = server
    this.log.info({ host: '127.0.0.1', port: this.loopbackAddress?.port }, 'web page and API listening over plain HTTP on loopback (ui.http; a session is required)')
  }

  private async listenTls (remote: RemoteAccess): Promise<void> {
    let cert: Buffer, key: Buffer
    try {
      cert = readSmallFile(remote.certFile)
      key = readSmallFile(remote.keyFile)
    } catch (err) {
      throw new NoodleError('ERR_TLS', `cannot read the API's TLS certificate or key: ${(err as Error).message}`, { cause: err })
    }
    // A client that never completes its TLS handshake is cut off as soon as one that never sends its headers.
    const listener: Listener = { judge: remote, secure: true }
    const server = createTlsServer({ cert, key, minVersion: 'TLSv1.2', handshakeTimeout: this.timeouts.headersMs, ...this.serverOptions }, (req, res) => { this.serve(req, res, listener) })
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { this.upgrade(req, socket, head, listener) })
    // TLS failures (a bad or slow handshake) come to refuseClient too: https re-emits them as clientError.
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => { this.refuseClient(err, socket) })
    server.maxConnections = remote.maxConnections
    server.keepAliveTimeout = KEEP_ALIVE_MS
    server.maxRequestsPerSocket = MAX_REQUESTS_PER_SOCKET
    server.on('drop', () => { this.onRefused('connections') })
    // Before TLS starts on it: a client over its share is closed without costing a handshake.
    const perAddress = new AddressLimit(remote.maxConnectionsPerAddress)
    server.prependListener('connection', (socket: Socket) => {
      if (perAddress.admit(socket)) return
      this.onRefused('address_connections')
      socket.destroy()
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(remote.port, remote.host, () => { server.off('error', reject); resolve() })
    })
    this.tlsServer = server
    this.log.info({ host: remote.host, port: this.tcpAddress?.port }, 'control API listening over HTTPS (tokens required)')
  }

  async stop (): Promise<void> {
    for (const server of [this.server, this.tlsServer, this.loopbackServer]) {
      if (server == null) continue
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
    }
    this.server = undefined
    this.tlsServer = undefined
    this.loopbackServer = undefined
  }

  /**
   * Over TCP: the caller its token (or session cookie) names, if its role allows the route; else the error to
   * answer with. A session cookie acts only for requests from our own page, but for reading (GET).
   */
  private judge (req: IncomingMessage, route: string, { judge, secure, loopback }: Listener): Caller {
    if (loopback === true && !loopbackHost(req)) {
      throw new RequestRefusedError(421, 'ERR_HOST', 'ui.http answers only to 127.x.x.x, localhost or [::1] (another name may be another site\'s page resolving to this box)')
    }
    const needed = judge.access(route)
    const given = requestToken(req)
    const principal = given === undefined ? undefined : judge.authenticate(given.token)
    if (given?.fromCookie === true && principal !== undefined && (req.method !== 'GET' || route === this.liveRoute) && !fromOwnPage(req)) {
      throw new RequestRefusedError(403, 'ERR_ORIGIN', 'a request with the session cookie must come from the page itself (its Origin is not this host)')
    }
    if (needed === 'public') return { local: false, username: principal?.username ?? null, role: principal?.role ?? null, secure }
    if (principal === undefined) {
      throw new RequestRefusedError(401, 'ERR_UNAUTHENTICATED', given === undefined ? 'this needs a token: Authorization: Bearer <token> (POST /api/v1/identity/login)' : 'the token is unknown or expired')
    }
    if (RANK[principal.role] < RANK[needed]) {
      throw new RequestRefusedError(403, 'ERR_FORBIDDEN', `${route} needs the ${needed} role; ${principal.username} is ${principal.role}`)
    }
    return { local: false, ...principal, secure }
  }

  /** The live feed's route (`GET /api/v1/live`), judged as its upgrades are. */
  private get liveRoute (): string | undefined {
    return this.live === undefined ? undefined : `GET ${this.live.path}`
  }

  /**
   * A WebSocket upgrade on a TCP listener: only the live feed's path, and only for a caller its route admits; any
   * other is answered with a JSON error and closed, before anything is upgraded.
   */
  private upgrade (req: IncomingMessage, socket: Duplex, head: Buffer, listener: Listener): void {
    try {
      const target = requestTarget(req.url ?? '/')
      const route = this.liveRoute
      if (route === undefined || target.path !== this.live?.path) throw new RequestRefusedError(404, 'ERR_NOT_FOUND', `no WebSocket at ${target.path}`)
      if (target.query !== null) throw new RequestRefusedError(400, 'ERR_BAD_TARGET', `${target.path} takes no query parameters`)
      const caller = this.judge(req, route, listener)
      if (caller.local || caller.username === null || caller.role === null) throw new RequestRefusedError(401, 'ERR_UNAUTHENTICATED', 'the live feed needs a session')
      this.live.accept(req, socket, head, { username: caller.username, role: caller.role })
    } catch (err) {
      const known = err instanceof NoodleError ? err as NoodleError & { httpStatus?: number } : undefined
      const status = known?.httpStatus ?? 500
      const code = known?.code ?? 'ERR_INTERNAL'
      if (status >= 500) this.log.error({ err }, 'live feed upgrade failed')
      this.onRefused(refusalReason(code))
      if (socket.writable) socket.end(rawErrorAnswer(status, code, err instanceof Error ? err.message : 'internal error'), () => { socket.destroy() })
      else socket.destroy()
    }
  }

  /** Answers one request; whatever fails is answered as an error, never thrown to Node (which would exit). */
  private serve (req: IncomingMessage, res: ServerResponse, listener: Listener | undefined): void {
    this.handle(req, res, listener).catch((err: unknown) => {
      this.log.error({ err }, 'API answer failed')
      res.destroy()
    })
  }

  private async handle (req: IncomingMessage, res: ServerResponse, listener: Listener | undefined): Promise<void> {
    let path = ''
    let caller: Caller | undefined
    try {
      const target = requestTarget(req.url ?? '/')
      path = target.path
      const { route, handler, params } = this.find(req.method ?? 'GET', target)
      if (target.query !== null && !this.queryRoutes.has(route)) throw new RequestRefusedError(400, 'ERR_BAD_TARGET', `${path} takes no query parameters`)
      if (req.method === 'POST') checkContentType(req)
      caller = listener !== undefined ? this.judge(req, route, listener) : { local: true as const }
      const body = await handler(req, caller, target.query ?? new URLSearchParams(), params)
      if (body instanceof TextBody) {
        sendBytes(res, 200, body.contentType, body.text)
      } else if (body instanceof BinaryBody) {
        sendBytes(res, body.status, body.contentType, body.bytes, body.headers)
      } else if (body instanceof JsonReply) {
        sendJson(res, body.status, body.body, body.headers)
      } else {
        sendJson(res, 200, body)
      }
    } catch (err) {
      // The client is gone (it went away, or was cut off as too slow and counted then): nobody to answer.
      if (res.destroyed) return
      // NoodleErrors with an HTTP status are expected answers (503: no coordinator yet); anything else is a bug,
      // whatever was thrown (even null): a 500, logged.
      const known = err instanceof NoodleError ? err as NoodleError & { httpStatus?: number, field?: string, retryAfterS?: number } : undefined
      const status = known?.httpStatus ?? 500
      // Only a 500 is ours: a 502, 503 or 504 is another member, or no coordinator yet, and is counted, not logged.
      if (status === 500) this.log.error({ err, path }, 'API handler failed')
      const code = known?.code ?? 'ERR_INTERNAL'
      if (status >= 500) this.onFailed(refusalReason(code))
      else this.onRefused(refusalReason(code))
      const retryAfterS = known?.retryAfterS
      const headers: Record<string, string> = retryAfterS === undefined ? {} : { 'retry-after': String(retryAfterS) }
      if (err instanceof MethodNotAllowedError) headers.allow = err.allow
      // A stranger's refused request ends its connection: refusals cannot keep connections open for the asking.
      if (listener !== undefined && !this.hasValidToken(req, caller, listener)) headers.connection = 'close'
      sendError(res, status, code, err instanceof Error ? err.message : 'internal error', known?.field, headers)
    }
  }

  /** The route a request is for: a fixed path, else a template; 405 for a known path with another method, else 404. */
  private find (method: string, target: { path: string, rawPath: string }): { route: string, handler: RouteHandler, params: Record<string, string> } {
    // A template's own text (`/{id}/`) sent as a path is no fixed route.
    const fixed = target.path.includes('{') ? undefined : this.routes.get(`${method} ${target.path}`)
    if (fixed !== undefined) return { route: `${method} ${target.path}`, handler: fixed, params: {} }
    const raw = target.rawPath.split('/')
    const allowed = [...this.routes.keys()].filter((r) => r.endsWith(` ${target.path}`)).map((r) => r.split(' ')[0] as string)
    for (const template of this.templates) {
      const params = matchTemplate(template, raw)
      if (params === undefined) continue
      if (template.method === method) return { route: template.route, handler: this.routes.get(template.route) as RouteHandler, params }
      allowed.push(template.method)
    }
    if (allowed.length > 0) throw new MethodNotAllowedError(method, target.path, [...new Set(allowed)])
    throw new RequestRefusedError(404, 'ERR_NOT_FOUND', `no such endpoint: ${target.path}`)
  }

  /** Whether a TCP request carries a token that names an operator (judged again when the route was not reached). */
  private hasValidToken (req: IncomingMessage, caller: Caller | undefined, listener: Listener): boolean {
    if (caller !== undefined) return caller.local || caller.username !== null
    const given = requestToken(req)
    return given !== undefined && listener.judge.authenticate(given.token) !== undefined
  }

  /** A request Node could not parse (bad syntax, headers too large, too slow): a JSON error, then close. */
  private refuseClient (err: NodeJS.ErrnoException, socket: Duplex): void {
    // Bytes that arrive while the answer is sent fail the parser again: one refusal per connection.
    if (this.refusedSockets.has(socket)) return
    this.refusedSockets.add(socket)
    // Not an HTTP request at all: a TLS handshake that failed or never came. Nothing can be answered.
    const httpError = err.code?.startsWith('HPE_') === true || err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    if (!httpError) {
      if (socket instanceof TLSSocket && err.code !== 'ECONNRESET') this.onRefused('tls')
      socket.destroy()
      return
    }
    // A client gone, or one whose request was answered already (it closed while sending the rest): just close.
    const answered = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true
    if (!socket.writable || answered) {
      socket.destroy()
      return
    }
    const answer = CLIENT_ERRORS[err.code ?? ''] ?? MALFORMED
    this.onRefused(refusalReason(answer.code))
    socket.end(rawErrorAnswer(answer.status, answer.code, answer.message), () => { socket.destroy() })
  }
}
