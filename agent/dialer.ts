import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerId, PeerInfo } from '@libp2p/interface'
import type { Logger } from './logger.ts'
import type { MeshNode } from './mesh.ts'

interface Target {
  peerId: PeerId
  /** Addresses already given to the peer store: merging is not free, and a join repeats them many times over. */
  addrs: Set<string>
  /** Earliest time of the next attempt, and the wait after the next failure. */
  notBefore: number
  backoffMs: number
  inFlight: boolean
}

const FIRST_BACKOFF_MS = 250
const DIAL_TIMEOUT_MIN_MS = 1_000

/**
 * libp2p 3 does not dial the peers that discovery finds, nor come back to peers it lost: this does both.
 * Every known peer that is not connected is dialled, with a per-peer backoff that doubles from 250 ms up to
 * `redialIntervalMs` after quick failures (a box whose agent is down), so a restarted box is back within that
 * interval; a dial into silence (a cut link) is given up after a second and tried again at once, so a healed
 * link is back within about a second.
 */
export class PeerDialer {
  private readonly node: MeshNode
  private readonly log: Logger
  private readonly redialIntervalMs: number
  private readonly targets = new Map<string, Target>()
  private timer: NodeJS.Timeout | undefined

  constructor (components: { node: MeshNode, log: Logger, redialIntervalMs: number }) {
    this.node = components.node
    this.log = components.log
    this.redialIntervalMs = components.redialIntervalMs
  }

  start (): void {
    this.node.addEventListener('peer:discovery', this.onDiscovery)
    this.node.addEventListener('peer:connect', this.onConnect)
    this.timer = setInterval(() => { this.dialDue() }, Math.min(FIRST_BACKOFF_MS, this.redialIntervalMs))
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.node.removeEventListener('peer:discovery', this.onDiscovery)
    this.node.removeEventListener('peer:connect', this.onConnect)
    this.targets.clear()
  }

  /** Keep this peer connected; `addrs` (multiaddr strings) are added to what the peer store knows of it. */
  async want (peerIdText: string, addrs: string[] = []): Promise<void> {
    let target = this.targets.get(peerIdText)
    const isNew = target == null
    if (target == null) {
      const peerId = peerIdFromString(peerIdText)
      if (peerId.equals(this.node.peerId)) return
      target = { peerId, addrs: new Set(), notBefore: 0, backoffMs: FIRST_BACKOFF_MS, inFlight: false }
      this.targets.set(peerIdText, target)
    }
    const known = target.addrs
    const fresh = addrs.filter((a) => !known.has(a))
    for (const a of fresh) known.add(a)
    const multiaddrs = fresh.flatMap((a) => { try { return [multiaddr(a)] } catch { return [] } })
    if (multiaddrs.length > 0) await this.node.peerStore.merge(target.peerId, { multiaddrs })
    // Something new to try: try it now. Otherwise the timer retries, keeping to the backoff.
    if (isNew || multiaddrs.length > 0) this.dial(peerIdText)
  }

  /** Stop dialling this peer (it left, or was forgotten). */
  forget (peerIdText: string): void {
    this.targets.delete(peerIdText)
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
    const now = Date.now()
    for (const [id, target] of this.targets) {
      if (!target.inFlight && target.notBefore <= now) this.dial(id)
    }
  }

  private dial (id: string): void {
    const target = this.targets.get(id)
    if (target == null || target.inFlight || this.node.getConnections(target.peerId).length > 0) return
    target.inFlight = true
    // A dial into a cut link hangs on SYN retries (1 s, 3 s, 7 s…); give up sooner and send a fresh SYN, so a
    // healed link is found within about a dial timeout.
    const timeoutMs = Math.max(DIAL_TIMEOUT_MIN_MS, this.redialIntervalMs)
    const started = Date.now()
    this.node.dial(target.peerId, { signal: AbortSignal.timeout(timeoutMs) }).then(() => {
      target.backoffMs = FIRST_BACKOFF_MS
      this.log.debug({ peer: id }, 'dialled peer')
    }, (err: unknown) => {
      // A dial that hung for its whole timeout has waited already; only quick failures (refused) back off.
      const hung = Date.now() - started >= timeoutMs
      target.notBefore = hung ? 0 : Date.now() + target.backoffMs
      if (!hung) target.backoffMs = Math.min(target.backoffMs * 2, this.redialIntervalMs)
      this.log.debug({ peer: id, err: (err as Error).message }, 'dial failed')
    }).finally(() => {
      target.inFlight = false
    })
  }
}
