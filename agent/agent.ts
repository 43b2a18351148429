import { join } from 'node:path'
import { ensureDataDir, loadOrCreateIdentity, readSwarmKey } from '../identity/keys.ts'
import { REJECTED_METRIC } from '../protocols/validator.ts'
import { ControlApi } from './api.ts'
import type { ResolvedConfig } from './config.ts'
import { PeerDialer } from './dialer.ts'
import { HealthReporter } from './health-reporter.ts'
import { HealthSampler } from './health.ts'
import { Lifecycle } from './lifecycle.ts'
import type { Logger } from './logger.ts'
import { MemberSync } from './member-sync.ts'
import { Membership, healthOf } from './membership.ts'
import { MembershipService } from './membership-service.ts'
import { Mesh } from './mesh.ts'
import { MetricsStore } from './metrics.ts'
import { Store } from './store.ts'
import { VERSION } from './version.ts'
import { nodeView } from './views.ts'
import type { GossipView, NodeView, StatusView } from './views.ts'

/**
 * One Noodle agent: the store, the libp2p mesh, membership and health beacons, and the local control API,
 * started in that order and stopped in reverse.
 */
export class Agent {
  readonly mesh: Mesh
  readonly membership: Membership
  private readonly config: ResolvedConfig
  private readonly metrics: MetricsStore
  private readonly lifecycle: Lifecycle
  private readonly startedAt: number

  private constructor (parts: {
    config: ResolvedConfig
    log: Logger
    startedAt: number
    store: Store
    metrics: MetricsStore
    mesh: Mesh
    membership: Membership
    dialer: PeerDialer
    service: MembershipService
    reporter: HealthReporter
    sync: MemberSync
  }) {
    this.config = parts.config
    this.mesh = parts.mesh
    this.membership = parts.membership
    this.metrics = parts.metrics
    this.startedAt = parts.startedAt
    const api = new ControlApi({
      socketPath: parts.config.api.socketPath,
      log: parts.log,
      routes: {
        'GET /api/v1/system/status': () => this.status(),
        'GET /api/v1/mesh/nodes': () => this.nodes(),
        'GET /api/v1/mesh/gossip': () => this.gossip()
      }
    })
    this.lifecycle = new Lifecycle([
      ['store', parts.store],
      ['mesh', parts.mesh],
      ['dialer', parts.dialer],
      ['member sync', parts.sync],
      ['membership', parts.service],
      ['health', parts.reporter],
      ['api', api]
    ], parts.log)
  }

  static async create ({ config, log }: { config: ResolvedConfig, log: Logger }): Promise<Agent> {
    const startedAt = Date.now()
    ensureDataDir(config.dataDir)
    const { privateKey, peerId } = await loadOrCreateIdentity(config.dataDir)
    const swarmKey = readSwarmKey(config.swarmKeyFile)
    const store = new Store({ path: join(config.dataDir, 'noodle.db'), log })
    const metrics = new MetricsStore()
    const mesh = await Mesh.create({ config, privateKey, swarmKey, metrics, log })
    const membership = new Membership({
      self: { peerId: peerId.toString(), name: config.name, state: 'alive', role: 'member', addrs: [], lastSeen: startedAt, health: null },
      options: config.membership
    })
    const dialer = new PeerDialer({ node: mesh.node, log, redialIntervalMs: config.membership.redialIntervalMs })
    const reporter = new HealthReporter({
      mesh,
      sampler: new HealthSampler({ dataDir: config.dataDir }),
      log,
      name: config.name,
      version: VERSION,
      intervalMs: config.health.intervalMs,
      startedAt,
      role: () => 'member',
      onBeacon: (beacon) => { membership.updateSelf({ name: beacon.name, role: beacon.role, addrs: beacon.addrs, health: healthOf(beacon) }) }
    })
    const service = new MembershipService({
      mesh,
      membership,
      dialer,
      store,
      log,
      startedAt,
      tickMs: Math.max(50, Math.floor(config.membership.suspectAfterMs / 10)),
      onNews: () => { reporter.publishSoon() }
    })
    const sync = new MemberSync({ node: mesh.node, membership, dialer, metrics, log })
    const agent = new Agent({ config, log, startedAt, store, metrics, mesh, membership, dialer, service, reporter, sync })
    return agent
  }

  async start (): Promise<void> {
    await this.lifecycle.start()
  }

  async stop (): Promise<void> {
    await this.lifecycle.stop()
  }

  status (): StatusView {
    return {
      peerId: this.mesh.peerId.toString(),
      name: this.config.name,
      version: VERSION,
      uptimeS: Math.round((Date.now() - this.startedAt) / 100) / 10,
      role: this.membership.self.role,
      coordinator: null,
      members: this.membership.count('alive')
    }
  }

  nodes (): NodeView[] {
    return this.membership.list().map(nodeView)
  }

  gossip (): GossipView {
    const rejected: Record<string, number> = {}
    for (const [key, n] of Object.entries(this.metrics.series(REJECTED_METRIC))) rejected[key] = n
    for (const [error, n] of Object.entries(this.metrics.series('gossipsub_msg_received_invalid_total'))) {
      // Our validators' refusals are counted above; gossipsub's own (bad signature, seqno, from) come here.
      if (error !== 'reject') rejected[`envelope/${error}`] = n
    }
    return {
      sentBytes: this.metrics.get('gossipsub_rpc_sent_bytes_total'),
      receivedBytes: this.metrics.get('gossipsub_rpc_recv_bytes_total'),
      published: this.metrics.sum('gossipsub_msg_publish_count_total'),
      rejected
    }
  }
}
