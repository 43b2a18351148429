import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import type { WebSocket } from 'ws'
import { RequestRefusedError } from '../../common/errors.ts'
import type { Logger } from '../../common/logger.ts'
import type { OperatorRole } from '../../protocols/identity.ts'
import { requestToken } from './server.ts'
import type { LiveUpgrades } from './server.ts'

/** What the live feed reads: each as the API's GET of it answers (the page renders both the same way). */
export interface LiveSources {
  /** `GET /api/v1/mesh/nodes` */
  nodes: () => unknown
  /** `GET /api/v1/cameras` */
  cameras: () => unknown
  /** The newest camera events (`GET /api/v1/events`), newest first. */
  events: () => ReadonlyArray<{ id: string }>
  /** The newest decisions (`GET /api/v1/ahr/decisions`), newest first. */
  decisions: () => ReadonlyArray<{ id: string }>
}

/** Limits: the feed's memory and work stay bounded whoever connects and however slowly they read. */
export interface LiveLimits {
  /** Clients at once, and per operator. */
  maxClients: number
  maxClientsPerUser: number
  /** Bytes a client may leave unread before it is dropped (a stalled browser, a slow link). */
  maxBufferedBytes: number
  /** A client message larger than this closes it (the page sends none). */
  maxMessageBytes: number
  /** Client messages per window before it is dropped as a flood. */
  maxMessagesPerWindow: number
  windowMs: number
  /** How often the sources are looked at (members and events), and cameras' figures. */
  tickMs: number
  camerasEveryTicks: number
  /** A ping this often; a client that has not answered the last one is dropped. */
  pingMs: number
}

export const DEFAULT_LIVE_LIMITS: LiveLimits = {
  maxClients: 32,
  maxClientsPerUser: 8,
  maxBufferedBytes: 512 * 1024,
  maxMessageBytes: 1024,
  maxMessagesPerWindow: 20,
  windowMs: 10_000,
  tickMs: 1_000,
  camerasEveryTicks: 2,
  pingMs: 30_000
}

/** Why a client was dropped, as counted (`noodle_live_dropped_total{reason}`). */
export const LIVE_DROPPED_METRIC = 'noodle_live_dropped_total'
/** Events and decisions kept to compare each look with the last. */
const RECENT = 50

interface Client {
  ws: WebSocket
  username: string
  /** The token the client came with: it is dropped when that ends (logout, expiry, account removed). */
  token: string
  messages: number
  windowStart: number
  alive: boolean
}

/**
 * The page's live feed (`GET /api/v1/live`, a WebSocket): members and their health, camera figures, camera events
 * and decisions are pushed as they change, so no page polls. The feed looks at its sources once a tick while a
 * client is connected (none: nothing runs), and sends only what changed, one JSON text per change, to every client.
 * Each client is bounded: what it leaves unread, what it sends, how long it stays without answering a ping, and
 * how long its session lasts.
 */
export class LiveFeed implements LiveUpgrades {
  readonly path = '/api/v1/live'
  private readonly sources: LiveSources
  private readonly authenticate: (token: string) => { username: string, role: OperatorRole } | undefined
  private readonly log: Logger
  private readonly limits: LiveLimits
  private readonly onDropped: (reason: string) => void
  private readonly clients = new Set<Client>()
  private server: WebSocketServer | undefined
  private ticker: NodeJS.Timeout | undefined
  private pinger: NodeJS.Timeout | undefined
  private ticks = 0
  /** What was last sent (or seen at the first look), to send only changes. */
  private last = { nodes: '', cameras: '', events: new Map<string, string>(), decisions: new Set<string>(), primed: false }

  constructor (components: {
    sources: LiveSources
    authenticate: (token: string) => { username: string, role: OperatorRole } | undefined
    log: Logger
    limits?: Partial<LiveLimits>
    onDropped?: (reason: string) => void
  }) {
    this.sources = components.sources
    this.authenticate = components.authenticate
    this.log = components.log
    this.limits = { ...DEFAULT_LIVE_LIMITS, ...components.limits }
    this.onDropped = components.onDropped ?? (() => {})
  }

  start (): void {
    this.server = new WebSocketServer({ noServer: true, maxPayload: this.limits.maxMessageBytes, perMessageDeflate: false, clientTracking: false })
    this.pinger = setInterval(() => { this.ping() }, this.limits.pingMs).unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.pinger)
    this.stopTicking()
    for (const client of this.clients) client.ws.terminate()
    this.clients.clear()
    const server = this.server
    this.server = undefined
    await new Promise<void>((resolve) => { if (server === undefined) resolve(); else server.close(() => { resolve() }) })
  }

  /** Clients connected now. */
  get size (): number {
    return this.clients.size
  }

  /** A judged caller's upgrade (ControlApi checked its session, role and origin): refused past the limits. */
  accept (req: IncomingMessage, socket: Duplex, head: Buffer, caller: { username: string, role: OperatorRole }): void {
    const server = this.server
    if (server === undefined) throw new RequestRefusedError(503, 'ERR_UNAVAILABLE', 'the live feed is not running')
    if (this.clients.size >= this.limits.maxClients) throw new RequestRefusedError(503, 'ERR_LIVE_FULL', `the live feed has ${this.limits.maxClients} clients already`)
    const mine = [...this.clients].filter((c) => c.username === caller.username).length
    if (mine >= this.limits.maxClientsPerUser) throw new RequestRefusedError(429, 'ERR_LIVE_FULL', `${caller.username} has ${mine} live feeds open already`)
    const token = requestToken(req)?.token as string
    server.handleUpgrade(req, socket, head, (ws) => { this.connected(ws, caller, token) })
  }

  private connected (ws: WebSocket, caller: { username: string, role: OperatorRole }, token: string): void {
    const client: Client = { ws, username: caller.username, token, messages: 0, windowStart: Date.now(), alive: true }
    this.clients.add(client)
    ws.on('pong', () => { client.alive = true })
    ws.on('message', () => { this.heard(client) })
    // A frame over maxPayload, or a protocol error: ws closes it; the reason is counted.
    ws.on('error', (err: Error & { code?: string }) => { this.drop(client, err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'oversized' : 'protocol') })
    ws.on('close', () => {
      this.clients.delete(client)
      if (this.clients.size === 0) this.stopTicking()
    })
    this.send(client, { type: 'hello', username: caller.username, role: caller.role })
    this.send(client, { type: 'nodes', nodes: this.sources.nodes() })
    this.send(client, { type: 'cameras', cameras: this.sources.cameras() })
    if (this.ticker === undefined) this.startTicking()
  }

  /** The page sends nothing; a client that sends a flood is dropped. */
  private heard (client: Client): void {
    const now = Date.now()
    if (now - client.windowStart > this.limits.windowMs) {
      client.windowStart = now
      client.messages = 0
    }
    if (++client.messages > this.limits.maxMessagesPerWindow) this.drop(client, 'flood', 1008)
  }

  private drop (client: Client, reason: string, code?: number): void {
    if (!this.clients.delete(client)) return
    this.onDropped(reason)
    this.log.debug({ username: client.username, reason }, 'live feed client dropped')
    if (code !== undefined && client.ws.readyState === client.ws.OPEN) {
      client.ws.close(code, reason)
      // A client that does not finish the close is cut off.
      setTimeout(() => { client.ws.terminate() }, 1_000).unref()
    } else {
      client.ws.terminate()
    }
    if (this.clients.size === 0) this.stopTicking()
  }

  private send (client: Client, message: unknown, text = JSON.stringify(message)): void {
    if (client.ws.readyState !== client.ws.OPEN) return
    // What a client has not read stays in our memory: past the limit, it is dropped rather than buffered.
    if (client.ws.bufferedAmount + text.length > this.limits.maxBufferedBytes) {
      this.drop(client, 'slow')
      return
    }
    client.ws.send(text)
  }

  private broadcast (message: unknown): void {
    const text = JSON.stringify(message)
    for (const client of [...this.clients]) this.send(client, message, text)
  }

  private startTicking (): void {
    this.last = { nodes: '', cameras: '', events: new Map(), decisions: new Set(), primed: false }
    this.ticker = setInterval(() => { this.tick() }, this.limits.tickMs).unref()
    this.tick()
  }

  private stopTicking (): void {
    clearInterval(this.ticker)
    this.ticker = undefined
  }

  /** One look at the sources: what changed since the last goes out. A source that fails is logged, the rest go on. */
  private tick (): void {
    this.ticks++
    this.look('nodes', () => {
      const nodes = this.sources.nodes()
      const text = JSON.stringify(nodes)
      if (text !== this.last.nodes && this.last.primed) this.broadcast({ type: 'nodes', nodes })
      this.last.nodes = text
    })
    if (this.ticks % this.limits.camerasEveryTicks === 0 || !this.last.primed) {
      this.look('cameras', () => {
        const cameras = this.sources.cameras()
        const text = JSON.stringify(cameras)
        if (text !== this.last.cameras && this.last.primed) this.broadcast({ type: 'cameras', cameras })
        this.last.cameras = text
      })
    }
    this.look('events', () => {
      const seen = new Map<string, string>()
      // Oldest first, so that the page gets them in order.
      for (const event of [...this.sources.events()].slice(0, RECENT).reverse()) {
        const text = JSON.stringify(event)
        seen.set(event.id, text)
        if (this.last.primed && this.last.events.get(event.id) !== text) this.broadcast({ type: 'event', event })
      }
      this.last.events = seen
    })
    this.look('decisions', () => {
      const seen = new Set<string>()
      for (const decision of [...this.sources.decisions()].slice(0, RECENT).reverse()) {
        seen.add(decision.id)
        if (this.last.primed && !this.last.decisions.has(decision.id)) this.broadcast({ type: 'decision', decision })
      }
      this.last.decisions = seen
    })
    this.last.primed = true
    // A session that ended (logout, expiry, the account removed) ends its feed.
    for (const client of [...this.clients]) {
      if (this.authenticate(client.token) === undefined) this.drop(client, 'session', 4001)
    }
  }

  private look (what: string, fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.log.warn({ err, what }, 'the live feed could not read a source')
    }
  }

  /** A client that did not answer the last ping is gone (a dead TCP connection keeps no memory here for long). */
  private ping (): void {
    for (const client of [...this.clients]) {
      if (!client.alive) {
        this.drop(client, 'unresponsive')
        continue
      }
      client.alive = false
      client.ws.ping()
    }
  }
}
