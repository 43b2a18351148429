import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerId, PeerInfo } from '@libp2p/interface'
import type { Logger } from '../../common/logger.ts'
import type { MeshNode } from './mesh.ts'
import type { MetricsStore } from '../metrics/metrics.ts'
import { knock as tcpKnock, tcpTargets } from './knock.ts'
import type { Knock } from './knock.ts'

/**
 * Where a dial target was learnt. A `member` sent us a valid signed beacon (or did before a restart), or is a
 * configured bootstrap peer; `hearsay` came from mDNS (which needs no key) or another member's list, and is
 * only kept for a while, and only so many, until it proves to be a member.
 */
export type TargetOrigin = 'member' | 'hearsay'

/** Dial targets not yet known to be members, at most; more are dropped until some expire or join. */
export const MAX_HEARSAY_TARGETS = 256
/** Addresses kept per target (a beacon carries 8 at most); more are dropped. */
export const MAX_TARGET_ADDRS = 8
/** How long a target learnt by hearsay is dialled before it is given up unless it became a member. */
export const HEARSAY_TTL_MS = 3 * 60_000
/** Counter of dial targets and addresses dropped, by reason: `addrs`, `targets` (the caps), `expired`. */
export const DIAL_DROPPED_METRIC = 'noodle_dial_targets_dropped_total'

interface Target {
  peerId: PeerId
  origin: TargetOrigin
  /** When a hearsay target is given up. */
  expiresAt: number
  /** Addresses already given to the peer store: merging is not free, and a join repeats them many times over. */
  addrs: Set<string>
  /** Earliest time of the next attempt, and the wait after the next failure. */
  notBefore: number
  backoffMs: number
  inFlight: boolean
  /** Its last dial hung into silence (a cut link): knock before dialling again (see KNOCK_MS). */
  hung: boolean
  /** Its port just answered a knock: the next dial has KNOCKED_DIAL_TIMEOUT_MS. */
  knockAnswered: boolean
}

/** Partial mesh: connections past mesh.connections that others' dials may add (they dialled while we were under K). */
export const CONNECTION_SLACK = 2
/**
 * Partial mesh: how long a connection past K + CONNECTION_SLACK is kept before it is closed: long enough for member
 * sync, so that a newcomer that joined through a full member learns whom else to dial.
 */
export const CONNECTION_GRACE_MS = 5_000

/**
 * Partial mesh: how often a member with K connections dials one member it lists dead anyway (Serf's reconnect).
 * Once a partition lasted long enough for the connections across it to close, each side fills its K on its own
 * side, and without this nobody would dial across again after the heal: two meshes, two coordinators, for good.
 */
export const RECONNECT_INTERVAL_MS = 2_000

const FIRST_BACKOFF_MS = 250
const DIAL_TIMEOUT_MIN_MS = 1_000
/**
 * A peer whose last dial hung is knocked (a bare TCP connection, given this long) each tick before it is dialled
 * again: a SYN every quarter second or so instead of one per dial timeout, so a healed link is found within a tick
 * or two, where a dial in flight into the cut held it back up to its whole timeout (bench/election, half|half heal).
 */
export const KNOCK_MS = 300
/** How long a dial may take once the peer's port answered a knock (the link works; only the handshake is slow). */
export const KNOCKED_DIAL_TIMEOUT_MS = 5_000

/**
 * libp2p 3 does not dial the peers that discovery finds, nor come back to peers it lost: this does both.
 * Every known peer that is not connected is dialled, with a per-peer backoff that doubles from 250 ms up to
 * `redialIntervalMs` after quick failures (a box whose agent is down), so a restarted box is back within that
 * interval; a dial into silence (a cut link) is given up after a second, and a member is then knocked each tick
 * (KNOCK_MS) and dialled once its port answers, so a healed link is back within a tick or two.
 * Peers learnt by hearsay are capped in number and addresses and expire unless they become members (see
 * `TargetOrigin`); what is dropped is counted.
 * With `maxConnections` K > 0 (mesh.connections: a partial mesh), it dials only while fewer than K peers are
 * connected or being dialled, picking due targets in random order (a random graph). Connections it has are kept
 * (replaced only when they close); past K + CONNECTION_SLACK, which only others' dials bring, the newest are
 * closed once CONNECTION_GRACE_MS old. libp2p's own cap is not used: it refuses a newcomer outright, and one
 * that joins through a full member would then learn of nobody else.
 */
export class PeerDialer {
  private readonly node: MeshNode
  private readonly log: Logger
  private readonly metrics: MetricsStore
  private readonly redialIntervalMs: number
  private readonly bootstrap: Set<string>
  private readonly now: () => number
  private readonly targets = new Map<string, Target>()
  private readonly maxConnections: number
  private readonly listedDead: (() => string[]) | undefined
  private nextReconnectAt = 0
  private hearsay = 0
  private dialing = 0
  private timer: NodeJS.Timeout | undefined

  /** `listedDead`: the members the table lists dead (partial mesh: one of them is dialled now and then, see `RECONNECT_INTERVAL_MS`). */
  private readonly knock: Knock

  constructor (components: { node: MeshNode, log: Logger, metrics: MetricsStore, redialIntervalMs: number, bootstrapPeers?: string[], maxConnections?: number, listedDead?: () => string[], now?: () => number, knock?: Knock }) {
    this.node = components.node
    this.log = components.log
    this.metrics = components.metrics
    this.redialIntervalMs = components.redialIntervalMs
    this.bootstrap = new Set(components.bootstrapPeers)
    this.maxConnections = components.maxConnections ?? 0
    this.listedDead = components.listedDead
    this.now = components.now ?? Date.now
    this.knock = components.knock ?? tcpKnock
  }

  /** Peers being dialled (or kept connected), and how many of them are hearsay. */
  get size (): { targets: number, hearsay: number } {
    return { targets: this.targets.size, hearsay: this.hearsay }
  }

  start (): void {
    this.node.addEventListener('peer:discovery', this.onDiscovery)
    this.node.addEventListener('peer:connect', this.onConnect)
    this.timer = setInterval(() => { this.expire(); this.trim(); this.dialDue(); this.reconnect() }, Math.min(FIRST_BACKOFF_MS, this.redialIntervalMs))
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.node.removeEventListener('peer:discovery', this.onDiscovery)
    this.node.removeEventListener('peer:connect', this.onConnect)
    this.targets.clear()
    this.hearsay = 0
  }

  /**
   * Keep this peer connected; `addrs` (multiaddr strings) are added to what the peer store knows of it. A
   * `member` target stays until forgotten; a `hearsay` one is capped and expires (a member's later `want`
   * promotes it).
   */
  async want (peerIdText: string, addrs: string[] = [], origin: TargetOrigin = 'hearsay'): Promise<void> {
    let target = this.targets.get(peerIdText)
    const isNew = target == null
    const kept: TargetOrigin = origin === 'member' || this.bootstrap.has(peerIdText) ? 'member' : 'hearsay'
    if (target == null) {
      const peerId = peerIdFromString(peerIdText)
      if (peerId.equals(this.node.peerId)) return
      if (kept === 'hearsay' && this.hearsay >= MAX_HEARSAY_TARGETS) {
        this.drop('targets', peerIdText)
        return
      }
      target = { peerId, origin: kept, expiresAt: this.now() + HEARSAY_TTL_MS, addrs: new Set(), notBefore: 0, backoffMs: FIRST_BACKOFF_MS, inFlight: false, hung: false, knockAnswered: false }
      this.targets.set(peerIdText, target)
      if (kept === 'hearsay') this.hearsay++
    } else if (kept === 'member' && target.origin === 'hearsay') {
      target.origin = 'member'
      this.hearsay--
    }
    const known = target.addrs
    const unknown = [...new Set(addrs)].filter((a) => !known.has(a))
    const fresh = unknown.slice(0, Math.max(0, MAX_TARGET_ADDRS - known.size))
    if (fresh.length < unknown.length) this.drop('addrs', peerIdText, unknown.length - fresh.length)
    for (const a of fresh) known.add(a)
    const multiaddrs = fresh.flatMap((a) => { try { return [multiaddr(a)] } catch { return [] } })
    if (multiaddrs.length > 0) await this.node.peerStore.merge(target.peerId, { multiaddrs })
    // Something new to try: try it now. Otherwise the timer retries, keeping to the backoff.
    if (isNew || multiaddrs.length > 0) this.dial(peerIdText)
  }

  /** Stop dialling this peer (it left, or was forgotten). */
  forget (peerIdText: string): void {
    if (this.targets.get(peerIdText)?.origin === 'hearsay') this.hearsay--
    this.targets.delete(peerIdText)
  }

  /** Gives up the hearsay targets whose time is up (they never sent a beacon: not members, or not agents). */
  expire (): void {
    const now = this.now()
    for (const [id, target] of this.targets) {
      if (target.origin === 'hearsay' && target.expiresAt <= now) {
        this.forget(id)
        this.drop('expired', id)
      }
    }
  }

  private drop (reason: 'addrs' | 'targets' | 'expired', peer: string, n = 1): void {
    this.metrics.inc(DIAL_DROPPED_METRIC, { reason }, n)
    this.log.debug({ peer, reason, n }, 'dial target dropped')
  }

  private readonly onDiscovery = (event: CustomEvent<PeerInfo>): void => {
    const { id, multiaddrs } = event.detail
    this.want(id.toString(), multiaddrs.map(String)).catch((err: unknown) => {
      this.log.debug({ err, peer: id.toString() }, 'discovered peer not usable')
    })
  }

  private readonly onConnect = (event: CustomEvent<PeerId>): void => {
    const target = this.targets.get(event.detail.toString())
    if (target != null) {
      target.backoffMs = FIRST_BACKOFF_MS
      target.notBefore = 0
    }
  }

  private dialDue (): void {
    const now = this.now()
    const due: string[] = []
    for (const [id, target] of this.targets) {
      if (!target.inFlight && target.notBefore <= now) due.push(id)
    }
    if (this.maxConnections > 0) shuffle(due)
    for (const id of due) this.dial(id)
  }

  /** Partial mesh: closes the newest connections past K + CONNECTION_SLACK peers, once they had their grace. */
  trim (): void {
    if (this.maxConnections === 0) return
    const newest = new Map<string, { peerId: PeerId, openedAt: number }>()
    for (const c of this.node.getConnections()) {
      const id = c.remotePeer.toString()
      const openedAt = Math.min(newest.get(id)?.openedAt ?? Infinity, c.timeline.open)
      newest.set(id, { peerId: c.remotePeer, openedAt })
    }
    const excess = newest.size - (this.maxConnections + CONNECTION_SLACK)
    if (excess <= 0) return
    const now = Date.now()
    // The newest of those past their grace: skipping the young ones rather than stopping at them, since others'
    // probes open short-lived connections all the time, and an excess peer behind them was never closed (CI saw
    // one member hold 5 peers for 30 s, K = 2).
    const closing = [...newest.values()].filter((c) => now - c.openedAt >= CONNECTION_GRACE_MS)
      .sort((a, b) => b.openedAt - a.openedAt).slice(0, excess)
    for (const { peerId } of closing) {
      this.log.debug({ peer: peerId.toString() }, 'closing a connection past mesh.connections')
      this.hangUp(peerId)
    }
  }

  /**
   * Partial mesh: every RECONNECT_INTERVAL_MS, one member listed dead (a wanted peer, not connected) is dialled
   * even with K connected. One that answers is back (its beacons cross the new connection, which stays: it is
   * within K + CONNECTION_SLACK); one that is gone refuses, at one dial per interval.
   */
  private reconnect (): void {
    if (this.maxConnections === 0 || this.listedDead == null) return
    const now = this.now()
    if (now < this.nextReconnectAt) return
    const candidates = this.listedDead().filter((id) => {
      const target = this.targets.get(id)
      return target != null && !target.inFlight && this.node.getConnections(target.peerId).length === 0
    })
    if (candidates.length === 0) return
    this.nextReconnectAt = now + RECONNECT_INTERVAL_MS
    this.dial(candidates[Math.floor(Math.random() * candidates.length)] as string, true)
  }

  /**
   * Partial mesh: a connection another part opened to `peer` and is done with (a probe's ping to a member that had
   * none). Kept while the node holds fewer than K other peers: closing it there would undo the very connection
   * the dialer is after (the member is on our side of a cut, and a probe found it first), and at K = 1 a probe
   * that kept closing it left two members that answer each other's pings but never hear each other's beacons.
   */
  release (peer: PeerId): void {
    if (this.maxConnections === 0) return
    const others = this.node.getPeers().filter((p) => !p.equals(peer)).length
    if (others < this.maxConnections) return
    this.hangUp(peer)
  }

  /** Closes every connection to `peer` (trim, release); a failure is only logged: the next tick looks again. */
  private hangUp (peer: PeerId): void {
    this.node.hangUp(peer).catch((err: unknown) => { this.log.debug({ err, peer: peer.toString() }, 'hang-up failed') })
  }

  /** Partial mesh: whether K peers are connected or being dialled already. */
  private full (): boolean {
    return this.maxConnections > 0 && this.node.getPeers().length + this.dialing >= this.maxConnections
  }

  private dial (id: string, reconnect = false): void {
    const target = this.targets.get(id)
    if (target == null || target.inFlight || this.node.getConnections(target.peerId).length > 0 || (!reconnect && this.full())) return
    // Members only: hearsay addresses are anyone's word, and a knock each tick would aim our SYNs where it says.
    const knockAt = target.hung && target.origin === 'member' ? tcpTargets([...target.addrs]) : []
    if (knockAt.length > 0) {
      target.inFlight = true
      this.knock(knockAt, KNOCK_MS).then((result) => {
        target.inFlight = false
        // Still nothing answers: knocked again at the next tick. Anything else (an answer, a refusal): dial.
        if (result === 'failed') return
        target.hung = false
        target.knockAnswered = result === 'connected'
        this.dial(id, reconnect)
      }, () => { target.inFlight = false })
      return
    }
    target.inFlight = true
    this.dialing++
    // A dial into a cut link hangs on SYN retries (1 s, 3 s, 7 s…); give up sooner, and knock from then on. A dial
    // that follows an answered knock has a link that works, and gets its time: after a heal every box dials half
    // the mesh at once, and on a 2-core box with 16 agents many handshakes took over a second, so a 1 s timeout
    // threw them away only to start them again.
    const timeoutMs = target.knockAnswered ? KNOCKED_DIAL_TIMEOUT_MS : Math.max(DIAL_TIMEOUT_MIN_MS, this.redialIntervalMs)
    target.knockAnswered = false
    const started = Date.now()
    this.node.dial(target.peerId, { signal: AbortSignal.timeout(timeoutMs) }).then(() => {
      target.hung = false
      target.backoffMs = FIRST_BACKOFF_MS
      this.log.debug({ peer: id }, 'dialled peer')
    }, (err: unknown) => {
      // A dial that hung for its whole timeout has waited already; only quick failures (refused) back off.
      const hung = Date.now() - started >= timeoutMs
      target.hung = hung
      target.notBefore = hung ? 0 : this.now() + target.backoffMs
      if (!hung) target.backoffMs = Math.min(target.backoffMs * 2, this.redialIntervalMs)
      this.log.debug({ peer: id, err: (err as Error).message }, 'dial failed')
    }).finally(() => {
      target.inFlight = false
      this.dialing--
    })
  }
}

function shuffle<T> (items: T[]): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const item = items[i] as T
    items[i] = items[j] as T
    items[j] = item
  }
}
