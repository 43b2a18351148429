import { chmodSync, readFileSync, unlinkSync } from 'node:fs'
import { createConnection } from 'node:net'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { OperatorRole } from '../protocols/identity.ts'
import type { z } from 'zod'
import { issueKey } from '../protocols/codec.ts'
import { BadRequestError, NoodleError } from './errors.ts'
import type { Logger } from './logger.ts'

/** Who is asking: anyone on the trusted local socket, or an operator with a token on the TCP listener. */
export type Caller = { local: true } | { local: false, username: string | null, role: OperatorRole | null }

/** A route's answer: the JSON body, and the status when it is not 200. */
export type RouteHandler = (req: IncomingMessage, caller: Caller) => unknown | Promise<unknown>

/** Who may call a route over TCP: anyone (login), or operators of at least this role. */
export type Access = 'public' | OperatorRole
const RANK: Record<OperatorRole, number> = { viewer: 0, operator: 1, admin: 2 }

/** The HTTPS listener: where, its certificate, and how tokens and routes are judged. */
export interface RemoteAccess {
  host: string
  port: number
  certFile: string
  keyFile: string
  authenticate: (token: string) => { username: string, role: OperatorRole } | undefined
  access: (route: string) => Access
}

/** A route's JSON answer with a status other than 200 (201 Created). */
export class JsonReply {
  readonly status: number
  readonly body: unknown

  constructor (status: number, body: unknown) {
    this.status = status
    this.body = body
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

/** Unified error body, the same for every endpoint: `{ "error": { "code", "message", "field"? } }`. */
function sendError (res: ServerResponse, status: number, code: string, message: string, field?: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: field === undefined ? { code, message } : { code, message, field } }, headers)
}

/** Request bodies are small JSON objects; anything bigger is refused before it is read. */
const MAX_BODY_BYTES = 64 * 1024

/** Checks a request body against its schema; a failure names the field. */
export function parseBody<S extends z.ZodType> (schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body)
  if (result.success) return result.data
  const issue = result.error.issues[0] as z.core.$ZodIssue
  const field = issueKey(issue)
  throw new BadRequestError(issue.code === 'unrecognized_keys' ? 'is not a known field' : issue.message, field === '' ? undefined : field)
}

/** Reads a request's JSON body (an object), refusing oversized, non-JSON and non-object bodies. */
export async function readJsonBody (req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) throw new BadRequestError(`the request body is over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk)
  }
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new BadRequestError('the request body is not JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequestError('the request body must be a JSON object')
  return body as Record<string, unknown>
}

function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

/** Whether something answers on the socket: a live agent, as opposed to a file left by one that crashed. */
function socketIsLive (path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path)
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

/**
 * The control API: HTTP+JSON on a Unix socket (mode 0660), so only the agent's user and group reach it and
 * nothing on the network does; and, when configured, the same routes over HTTPS for remote tools, where every
 * request needs a token and a role that allows it (`access`).
 */
export class ControlApi {
  private readonly socketPath: string
  private readonly routes: Map<string, RouteHandler>
  private readonly log: Logger
  private readonly remote: RemoteAccess | undefined
  private server: Server | undefined
  private tlsServer: Server | undefined

  constructor (components: { socketPath: string, routes: Record<string, RouteHandler>, log: Logger, remote?: RemoteAccess }) {
    this.socketPath = components.socketPath
    this.routes = new Map(Object.entries(components.routes))
    this.log = components.log
    this.remote = components.remote
  }

  /** The HTTPS listener's address once started (its port, when configured as 0). */
  get tcpAddress (): { host: string, port: number } | undefined {
    const address = this.tlsServer?.address()
    return address == null || typeof address === 'string' ? undefined : { host: address.address, port: address.port }
  }

  async start (): Promise<void> {
    if (await socketIsLive(this.socketPath)) {
      throw new NoodleError('ERR_AGENT_RUNNING', `an agent is already running on ${this.socketPath}`)
    }
    try { unlinkSync(this.socketPath) } catch { /* no stale socket */ }
    const server = createServer((req, res) => { void this.handle(req, res, false) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      // umask would otherwise decide the mode; 0660 lets the agent's group (the CLI's operators) in.
      server.listen(this.socketPath, () => { server.off('error', reject); resolve() })
    })
    chmodSync(this.socketPath, 0o660)
    this.server = server
    this.log.info({ socket: this.socketPath }, 'control API listening')
    if (this.remote !== undefined) await this.listenTls(this.remote)
  }

  private async listenTls (remote: RemoteAccess): Promise<void> {
    let cert: Buffer, key: Buffer
    try {
      cert = readFileSync(remote.certFile)
      key = readFileSync(remote.keyFile)
    } catch (err) {
      throw new NoodleError('ERR_TLS', `cannot read the API's TLS certificate or key: ${(err as Error).message}`, { cause: err })
    }
    const server = createTlsServer({ cert, key, minVersion: 'TLSv1.2' }, (req, res) => { void this.handle(req, res, true) })
    // Slow or idle clients on the network must not hold sockets open.
    server.headersTimeout = 10_000
    server.requestTimeout = 60_000
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(remote.port, remote.host, () => { server.off('error', reject); resolve() })
    })
    this.tlsServer = server
    this.log.info({ host: remote.host, port: this.tcpAddress?.port }, 'control API listening over HTTPS (tokens required)')
  }

  async stop (): Promise<void> {
    for (const server of [this.server, this.tlsServer]) {
      if (server == null) continue
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
    }
    this.server = undefined
    this.tlsServer = undefined
  }

  /** Over TCP: the caller its token names, if its role allows the route; else the error to answer with. */
  private judge (req: IncomingMessage, route: string, remote: RemoteAccess): Caller | NoodleError & { httpStatus: number } {
    const needed = remote.access(route)
    const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1]
    const principal = token === undefined ? undefined : remote.authenticate(token)
    if (needed === 'public') return { local: false, username: principal?.username ?? null, role: principal?.role ?? null }
    if (principal === undefined) {
      return Object.assign(new NoodleError('ERR_UNAUTHENTICATED', token === undefined ? 'this needs a token: Authorization: Bearer <token> (POST /api/v1/identity/login)' : 'the token is unknown or expired'), { httpStatus: 401 })
    }
    if (RANK[principal.role] < RANK[needed]) {
      return Object.assign(new NoodleError('ERR_FORBIDDEN', `${route} needs the ${needed} role; ${principal.username} is ${principal.role}`), { httpStatus: 403 })
    }
    return { local: false, ...principal }
  }

  private async handle (req: IncomingMessage, res: ServerResponse, overTcp: boolean): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://agent').pathname
    const route = `${req.method ?? 'GET'} ${path}`
    const handler = this.routes.get(route)
    if (handler == null) {
      const known = [...this.routes.keys()].some((r) => r.endsWith(` ${path}`))
      if (known) sendError(res, 405, 'ERR_METHOD', `${req.method ?? ''} is not allowed on ${path}`)
      else sendError(res, 404, 'ERR_NOT_FOUND', `no such endpoint: ${path}`)
      return
    }
    let caller: Caller = { local: true }
    if (overTcp && this.remote !== undefined) {
      const judged = this.judge(req, route, this.remote)
      if (judged instanceof NoodleError) {
        sendError(res, judged.httpStatus, judged.code, judged.message)
        return
      }
      caller = judged
    }
    try {
      const body = await handler(req, caller)
      if (body instanceof TextBody) {
        res.writeHead(200, { 'content-type': body.contentType, 'content-length': Buffer.byteLength(body.text) })
        res.end(body.text)
      } else if (body instanceof JsonReply) {
        sendJson(res, body.status, body.body)
      } else {
        sendJson(res, 200, body)
      }
    } catch (err) {
      // Errors that carry an HTTP status are expected answers (503: no coordinator yet); the rest are bugs.
      const status = (err as { httpStatus?: number }).httpStatus ?? 500
      if (status >= 500 && status !== 503) this.log.error({ err, path }, 'API handler failed')
      const retryAfterS = (err as { retryAfterS?: number }).retryAfterS
      sendError(res, status, (err as NoodleError).code ?? 'ERR_INTERNAL', (err as Error).message, (err as { field?: string }).field,
        retryAfterS === undefined ? {} : { 'retry-after': String(retryAfterS) })
    }
  }
}
