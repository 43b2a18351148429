import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { BoundedMap } from '../../common/bounded-map.ts'
import { NoodleError } from '../../common/errors.ts'
import type { Logger } from '../../common/logger.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import type { RejectionCounter } from '../../protocols/validator.ts'
import {
  MAX_JPEG_BYTES, MAX_VIEW_BODY_BYTES, MAX_VIEW_JSON_BYTES, MAX_VIEW_REQUEST_BYTES, VIEW_ERROR_CODES, VIEW_ERROR_STATUSES, VIEWS_PROTOCOL,
  decodeViewBody, viewHeaderCodec, viewRequestCodec
} from '../../protocols/views.ts'
import type { ViewAnswer, ViewHeader, ViewRequest } from '../../protocols/views.ts'
import { isLive } from '../membership/membership.ts'
import type { MemberState } from '../membership/membership.ts'

/** How long an asker waits for a member's whole answer (a camera's next frame included). */
export const VIEW_TIMEOUT_MS = 5_000
/** A request is one small frame: a member that takes longer to send it gets nothing. */
export const REQUEST_WAIT_MS = 1_000
/** Serving one view, the answer's write included, at most. */
const SERVE_TIMEOUT_MS = 10_000
/** Views served to one member per second, and the burst it may spend at once: a page of 20 cameras is 10/s. */
export const VIEWS_PER_S = 20
export const VIEW_BURST = 40
/** Views served at once, in all and to one member: a slow member holds a few, never all. */
export const MAX_SERVING = 16
export const MAX_SERVING_PER_PEER = 4
/**
 * Views asked of one member at once from here: as many as it serves one asker at a time; more wait their turn
 * (within the view's timeout), up to MAX_WAITING_PER_PEER, and past that are refused (503) rather than queued.
 */
export const MAX_ASKING_PER_PEER = MAX_SERVING_PER_PEER
export const MAX_WAITING_PER_PEER = 32
/** Buffered bytes a request's stream may hold (the request is at most MAX_VIEW_REQUEST_BYTES): past it, it is cut. */
const REQUEST_BUFFER_BYTES = 4 * 1024

/** What lpStream throws for a frame past its limit: its length, its length's length, or bytes past the buffer. */
const OVERSIZED = new Set(['InvalidDataLengthError', 'InvalidDataLengthLengthError', 'StreamBufferError'])

/** Why a view request from a member, or a member's answer, was refused: the reason of its counter. */
export type ViewRefusal = 'oversized' | 'malformed' | 'unknown-version' | 'invalid' | 'not-member' | 'not-shared' | 'rate-limited' | 'busy' | 'too-slow' | 'bad-answer'

/** 404: `?node=` names no live member. */
export class UnknownNodeError extends NoodleError {
  readonly httpStatus = 404

  constructor (peerId: string) {
    super('ERR_UNKNOWN_NODE', `${peerId} is not a live member of the mesh (see noodle nodes)`)
  }
}

/** 504: the member did not answer in time. */
export class NodeTimeoutError extends NoodleError {
  readonly httpStatus = 504

  constructor (peerId: string, timeoutMs: number) {
    super('ERR_NODE_TIMEOUT', `member ${peerId} did not answer within ${timeoutMs / 1000} s`)
  }
}

/** 503: the member could not be reached, cut the stream, or many views are asked of it from here already. */
export class NodeUnavailableError extends NoodleError {
  readonly httpStatus = 503
  readonly retryAfterS = 1

  constructor (message: string, options?: ErrorOptions) {
    super('ERR_NODE_UNAVAILABLE', message, options)
  }
}

/** 502: the member answered with something that is not the view. */
export class BadAnswerError extends NoodleError {
  readonly httpStatus = 502

  constructor (peerId: string, detail: string) {
    super('ERR_BAD_ANSWER', `member ${peerId} answered with something that is not the view: ${detail}`)
  }
}

/** The error a member answered with, as its own API would have (404 ERR_CAMERA_NOT_HERE…). */
export class RemoteViewError extends NoodleError {
  readonly httpStatus: number
  readonly retryAfterS: number | undefined

  constructor (name: string, header: Extract<ViewHeader, { ok: false }>) {
    super(header.code, `${name}: ${header.message}`)
    this.httpStatus = header.status
    this.retryAfterS = header.status === 503 || header.status === 429 ? 1 : undefined
  }
}

export interface ViewExchangeComponents {
  node: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol'>
  /** Who may ask (live members only) and whom we may ask. */
  membership: { get: (peerId: string) => { name: string, state: MemberState } | undefined }
  /** This box's own answer to a view (what its API gives); a NoodleError with an httpStatus is answered as such. */
  local: (request: ViewRequest) => Promise<ViewAnswer>
  metrics: RejectionCounter
  log: Logger
  timeoutMs?: number
  /** Members kept track of for rate limits (membership.maxMembers). */
  maxMembers: number
  /** Whether this box answers other members' views at all (`ui.shareViews`); it may ask theirs either way. */
  share?: boolean
}

/**
 * Tokens a view costs its asker beyond the first: a series of days or months sums up to a few years of hourly
 * rollups (~15 ms here, more on a Pi), a hundred times a minute's; the rest cost about the same.
 */
function extraCost (request: ViewRequest): number {
  return request.view === 'series' && (request.res === 'day' || request.res === 'month') ? 9 : 0
}

/** Views whose answers an asker shares for a moment: every page open on this box asks them of the same member. */
const SHARED_VIEWS = new Set<ViewRequest['view']>(['latest-jpeg', 'cameras'])
const SHARE_MS = 1_000
const MAX_SHARED = 256

/**
 * The views protocol (protocols/views.ts), both sides. Serving: a live member's request is read (one small frame,
 * within REQUEST_WAIT_MS), answered from this box's own data, and cut off when its member asks more than
 * VIEWS_PER_S (VIEW_BURST at once) or holds MAX_SERVING_PER_PEER views already; a request that is not one, or
 * comes from a stranger, gets nothing; each refusal is counted. Asking (`ask`): one stream per view, the whole
 * answer within `timeoutMs`, checked before it is passed on. Only reads: no view changes anything here or there.
 */
export class ViewExchange {
  private readonly node: ViewExchangeComponents['node']
  private readonly membership: ViewExchangeComponents['membership']
  private readonly local: ViewExchangeComponents['local']
  private readonly metrics: RejectionCounter
  private readonly log: Logger
  private readonly timeoutMs: number
  /** Per asking member: tokens left and when they were counted. */
  private readonly buckets: BoundedMap<string, { tokens: number, at: number }>
  /** Views being served, by asking member; views being asked, by member asked. */
  private readonly serving = new Map<string, number>()
  private servingTotal = 0
  private readonly asking = new Map<string, { running: number, waiting: Array<() => void> }>()
  private readonly share: boolean
  /** Answers being had or just had, by member and request (SHARED_VIEWS): one ask serves every page for SHARE_MS. */
  private readonly shared = new Map<string, { at: number, answer: Promise<ViewAnswer> }>()

  constructor (components: ViewExchangeComponents) {
    this.node = components.node
    this.membership = components.membership
    this.local = components.local
    this.metrics = components.metrics
    this.log = components.log
    this.timeoutMs = components.timeoutMs ?? VIEW_TIMEOUT_MS
    this.buckets = new BoundedMap(components.maxMembers, { refresh: true })
    this.share = components.share ?? true
  }

  async start (): Promise<void> {
    await this.node.handle(VIEWS_PROTOCOL, this.onStream, { maxInboundStreams: MAX_SERVING_PER_PEER * 2, maxOutboundStreams: MAX_ASKING_PER_PEER })
  }

  async stop (): Promise<void> {
    await this.node.unhandle(VIEWS_PROTOCOL)
  }

  /**
   * A view of a member's data, from that member. Throws the errors above, or the member's own (RemoteViewError).
   * A camera's frame or the cameras' figures asked again within SHARE_MS (another page, the next tile) get the
   * same answer, or wait for the same ask.
   */
  async ask (peerId: string, request: ViewRequest): Promise<ViewAnswer> {
    if (!SHARED_VIEWS.has(request.view)) return await this.askOnce(peerId, request)
    const key = `${peerId} ${JSON.stringify(request)}`
    const now = performance.now()
    const hit = this.shared.get(key)
    if (hit !== undefined && now - hit.at < SHARE_MS) return await hit.answer
    const answer = this.askOnce(peerId, request)
    this.shared.delete(key)
    this.shared.set(key, { at: now, answer })
    // A failure is not shared beyond those already waiting; the oldest entries go past MAX_SHARED.
    answer.catch(() => { if (this.shared.get(key)?.answer === answer) this.shared.delete(key) })
    for (const old of this.shared.keys()) {
      if (this.shared.size <= MAX_SHARED) break
      this.shared.delete(old)
    }
    return await answer
  }

  private async askOnce (peerId: string, request: ViewRequest): Promise<ViewAnswer> {
    const member = this.membership.get(peerId)
    if (member === undefined || !isLive(member.state)) throw new UnknownNodeError(peerId)
    const signal = AbortSignal.timeout(this.timeoutMs)
    let stream: Stream | undefined
    let release: (() => void) | undefined
    try {
      release = await this.turn(peerId, member.name, signal)
      stream = await this.node.dialProtocol(peerIdFromString(peerId), VIEWS_PROTOCOL, { signal })
      // No frame larger than the view's answer can be: a JPEG's 1 MiB is not read as 4 MiB of JSON would be.
      const max = request.view === 'latest-jpeg' || request.view === 'snapshot-jpeg' ? MAX_JPEG_BYTES : MAX_VIEW_BODY_BYTES
      const lp = lpStream(stream, { maxDataLength: max, maxBufferSize: max + 64 })
      await lp.write(viewRequestCodec.encode(request), { signal })
      const header = viewHeaderCodec.decode((await lp.read({ signal })).subarray())
      if (!header.ok) throw this.badAnswer(peerId, header.reason, header.detail)
      if (!header.value.ok) throw new RemoteViewError(member.name, header.value)
      const body = decodeViewBody(request.view, (await lp.read({ signal })).subarray())
      if (!body.ok) throw this.badAnswer(peerId, body.reason, body.detail)
      await stream.close({ signal })
      return body.value
    } catch (err) {
      stream?.abort(err as Error)
      if (err instanceof NoodleError) throw err
      if (signal.aborted) throw new NodeTimeoutError(peerId, this.timeoutMs)
      if (OVERSIZED.has((err as { name?: string }).name ?? '')) throw this.badAnswer(peerId, 'oversized', (err as Error).message)
      throw new NodeUnavailableError(`member ${member.name} could not be asked: ${(err as Error).message}`, { cause: err })
    } finally {
      release?.()
    }
  }

  /**
   * Waits for a turn to ask `peerId` (MAX_ASKING_PER_PEER at once) and resolves with its release: the member serves
   * one asker that many at a time and cuts the rest. Throws once MAX_WAITING_PER_PEER wait, or when `signal` ends.
   */
  private async turn (peerId: string, name: string, signal: AbortSignal): Promise<() => void> {
    let turns = this.asking.get(peerId)
    if (turns === undefined) {
      turns = { running: 0, waiting: [] }
      this.asking.set(peerId, turns)
    }
    const own = turns
    const release = (): void => {
      const next = own.waiting.shift()
      // The turn passes to the next in line, or is given back.
      if (next !== undefined) next()
      else if (--own.running === 0) this.asking.delete(peerId)
    }
    if (own.running < MAX_ASKING_PER_PEER) {
      own.running++
      return release
    }
    if (own.waiting.length >= MAX_WAITING_PER_PEER) throw new NodeUnavailableError(`${MAX_ASKING_PER_PEER + MAX_WAITING_PER_PEER} views are being asked of ${name} already: try again in a moment`)
    await new Promise<void>((resolve, reject) => {
      const go = (): void => {
        signal.removeEventListener('abort', giveUp)
        resolve()
      }
      const giveUp = (): void => {
        own.waiting.splice(own.waiting.indexOf(go), 1)
        reject(signal.reason)
      }
      own.waiting.push(go)
      signal.addEventListener('abort', giveUp, { once: true })
    })
    return release
  }

  private badAnswer (peerId: string, reason: string, detail: string): BadAnswerError {
    this.refuse('bad-answer', peerId, `${reason}: ${detail}`)
    return new BadAnswerError(peerId, `${reason}: ${detail}`)
  }

  private refuse (reason: ViewRefusal, peer: string, detail: string): void {
    this.metrics.inc(REJECTED_METRIC, { topic: VIEWS_PROTOCOL, reason })
    this.log.debug({ protocol: VIEWS_PROTOCOL, reason, peer, detail }, 'view refused')
  }

  /** Whether `peer` may have a view now: `n` tokens of its bucket (VIEWS_PER_S, VIEW_BURST at once). */
  private takeToken (peer: string, now: number, n = 1): boolean {
    const last = this.buckets.get(peer)
    const tokens = Math.min(VIEW_BURST, (last?.tokens ?? VIEW_BURST) + (last === undefined ? 0 : (now - last.at) * VIEWS_PER_S / 1000))
    if (tokens < n) {
      this.buckets.set(peer, { tokens, at: now })
      return false
    }
    this.buckets.set(peer, { tokens: tokens - n, at: now })
    return true
  }

  /** Answers a member's request with ERR_VIEWS_NOT_SHARED (its request read first, within REQUEST_WAIT_MS). */
  private async decline (stream: Stream): Promise<void> {
    const signal = AbortSignal.timeout(REQUEST_WAIT_MS)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_VIEW_REQUEST_BYTES, maxBufferSize: REQUEST_BUFFER_BYTES })
      await lp.read({ signal })
      await lp.write(viewHeaderCodec.encode({ v: 1, ok: false, status: 403, code: 'ERR_VIEWS_NOT_SHARED', message: 'this box shares no views (ui.shareViews is off)' }), { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  private readonly onStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString()
    const member = this.membership.get(peer)
    // Nothing is read from a stranger, nor past a member's share: the stream is cut at once.
    if (member === undefined || !isLive(member.state)) {
      this.refuse('not-member', peer, 'not a live member')
      stream.abort(new Error('not a member'))
      return
    }
    if (!this.share) {
      this.refuse('not-shared', peer, 'ui.shareViews is off')
      await this.decline(stream)
      return
    }
    if (!this.takeToken(peer, performance.now())) {
      this.refuse('rate-limited', peer, `over ${VIEWS_PER_S} views a second`)
      stream.abort(new Error('too many views asked'))
      return
    }
    const own = this.serving.get(peer) ?? 0
    if (own >= MAX_SERVING_PER_PEER || this.servingTotal >= MAX_SERVING) {
      this.refuse('busy', peer, `${own} views served to it, ${this.servingTotal} in all`)
      stream.abort(new Error('busy'))
      return
    }
    this.serving.set(peer, own + 1)
    this.servingTotal++
    try {
      await this.serve(stream, peer)
    } finally {
      this.servingTotal--
      const left = (this.serving.get(peer) ?? 1) - 1
      if (left === 0) this.serving.delete(peer)
      else this.serving.set(peer, left)
    }
  }

  private async serve (stream: Stream, peer: string): Promise<void> {
    const signal = AbortSignal.timeout(SERVE_TIMEOUT_MS)
    const lp = lpStream(stream, { maxDataLength: MAX_VIEW_REQUEST_BYTES, maxBufferSize: REQUEST_BUFFER_BYTES })
    let bytes: Uint8Array
    const waiting = AbortSignal.any([signal, AbortSignal.timeout(REQUEST_WAIT_MS)])
    try {
      bytes = (await lp.read({ signal: waiting })).subarray()
    } catch (err) {
      const name = (err as { name?: string }).name
      const reason: ViewRefusal = waiting.aborted ? 'too-slow' : OVERSIZED.has(name ?? '') ? 'oversized' : 'malformed'
      this.refuse(reason, peer, (err as Error).message)
      stream.abort(err as Error)
      return
    }
    const request = viewRequestCodec.decode(bytes)
    if (!request.ok) {
      this.refuse(request.reason, peer, request.detail)
      stream.abort(new Error(`request ${request.reason}`))
      return
    }
    const extra = extraCost(request.value)
    if (extra > 0 && !this.takeToken(peer, performance.now(), extra)) {
      this.refuse('rate-limited', peer, `a ${request.value.view} view costs ${extra + 1} of ${VIEWS_PER_S} a second`)
      stream.abort(new Error('too many views asked'))
      return
    }
    try {
      const { header, body } = await this.answer(request.value)
      await lp.write(viewHeaderCodec.encode(header), { signal })
      if (body !== undefined) await lp.write(body, { signal })
      await stream.close({ signal })
    } catch (err) {
      this.log.debug({ err: (err as Error).message, peer, view: request.value.view }, 'serving a view failed')
      stream.abort(err as Error)
    }
  }

  /** Our answer to a view: its header and body, or the error our API would give, as a header. */
  private async answer (request: ViewRequest): Promise<{ header: ViewHeader, body?: Uint8Array }> {
    let answer: ViewAnswer
    try {
      answer = await this.local(request)
    } catch (err) {
      const known = err instanceof NoodleError ? err as NoodleError & { httpStatus?: number } : undefined
      const status = VIEW_ERROR_STATUSES.find((s) => s === known?.httpStatus)
      const code = VIEW_ERROR_CODES.find((c) => c === known?.code)
      if (known === undefined || status === undefined || code === undefined) {
        this.log.warn({ err, view: request.view }, 'a view asked by a member failed')
        return { header: { v: 1, ok: false, status: 503, code: 'ERR_VIEW_FAILED', message: 'the member could not make this view' } }
      }
      return { header: { v: 1, ok: false, status, code, message: known.message.slice(0, 300) } }
    }
    const body = 'jpeg' in answer ? answer.jpeg : new TextEncoder().encode(JSON.stringify(answer.json))
    const max = 'jpeg' in answer ? MAX_JPEG_BYTES : MAX_VIEW_JSON_BYTES
    if (body.byteLength > max) {
      return { header: { v: 1, ok: false, status: 413, code: 'ERR_ANSWER_TOO_LARGE', message: `the view is ${body.byteLength} bytes, over the ${max} a member sends` } }
    }
    return { header: { v: 1, ok: true }, body }
  }
}
