import { chmodSync, unlinkSync } from 'node:fs'
import { createConnection } from 'node:net'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { z } from 'zod'
import { issueKey } from '../protocols/codec.ts'
import { BadRequestError, NoodleError } from './errors.ts'
import type { Logger } from './logger.ts'

/** A route's answer: the JSON body, and the status when it is not 200. */
export type RouteHandler = (req: IncomingMessage) => unknown | Promise<unknown>

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
function sendError (res: ServerResponse, status: number, code: string, message: string, field?: string): void {
  sendJson(res, status, { error: field === undefined ? { code, message } : { code, message, field } })
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

function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
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
 * The local control API: HTTP+JSON on a Unix socket (mode 0660), so only the agent's user and group reach it
 * and nothing on the network does.
 */
export class ControlApi {
  private readonly socketPath: string
  private readonly routes: Map<string, RouteHandler>
  private readonly log: Logger
  private server: Server | undefined

  constructor (components: { socketPath: string, routes: Record<string, RouteHandler>, log: Logger }) {
    this.socketPath = components.socketPath
    this.routes = new Map(Object.entries(components.routes))
    this.log = components.log
  }

  async start (): Promise<void> {
    if (await socketIsLive(this.socketPath)) {
      throw new NoodleError('ERR_AGENT_RUNNING', `an agent is already running on ${this.socketPath}`)
    }
    try { unlinkSync(this.socketPath) } catch { /* no stale socket */ }
    const server = createServer((req, res) => { void this.handle(req, res) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      // umask would otherwise decide the mode; 0660 lets the agent's group (the CLI's operators) in.
      server.listen(this.socketPath, () => { server.off('error', reject); resolve() })
    })
    chmodSync(this.socketPath, 0o660)
    this.server = server
    this.log.info({ socket: this.socketPath }, 'control API listening')
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = undefined
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => { resolve() }))
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://agent').pathname
    const handler = this.routes.get(`${req.method ?? 'GET'} ${path}`)
    if (handler == null) {
      const known = [...this.routes.keys()].some((r) => r.endsWith(` ${path}`))
      if (known) sendError(res, 405, 'ERR_METHOD', `${req.method ?? ''} is not allowed on ${path}`)
      else sendError(res, 404, 'ERR_NOT_FOUND', `no such endpoint: ${path}`)
      return
    }
    try {
      const body = await handler(req)
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
      sendError(res, status, (err as NoodleError).code ?? 'ERR_INTERNAL', (err as Error).message, (err as { field?: string }).field)
    }
  }
}
