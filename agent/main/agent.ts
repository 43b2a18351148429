import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { ensureDataDir, loadOrCreateIdentity, readSwarmKey } from '../../identity/keys.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { apiRoutes, controlApi } from '../api/control.ts'
import type { ApiSources } from '../api/control.ts'
import { clearImportStaging, importStagingDir } from '../api/model-import.ts'
import { statusLine, statusView } from '../api/routes/system.ts'
import { OperatorStore } from '../../identity/operators.ts'
import { systemEventCodec } from '../../protocols/events.ts'
import { PrometheusMetrics } from '../metrics/prometheus.ts'
import { SystemdNotifier } from './systemd.ts'
import { modelCompiledCodec } from '../../protocols/models.ts'
import { ModelExchange } from '../../runtime/model-exchange.ts'
import { ModelStandby } from '../../runtime/model-standby.ts'
import { cameraResultCodec } from '../../protocols/media.ts'
import { CameraManager } from '../../media/cameras.ts'
import { ResultSharing } from '../../media/result-sharing.ts'
import { checkOwnCameras, readCameraCredentials } from '../../media/camera-credentials.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import { ModelRuntime, compileResult } from '../../runtime/model-runtime.ts'
import { bootstrapPeerIds } from '../config/config.ts'
import type { ResolvedConfig } from '../config/config.ts'
import { PeerDialer } from '../mesh/dialer.ts'
import { Election, capabilityOf } from '../coordination/election.ts'
import type { Candidate } from '../coordination/election.ts'
import { ElectionService, savedTerm } from '../coordination/election-service.ts'
import { MAX_BEACON_MODELS } from '../../protocols/health.ts'
import { HealthReporter } from '../membership/health-reporter.ts'
import { DiskStatus, HealthSampler } from '../membership/health.ts'
import { Lifecycle } from './lifecycle.ts'
import type { Logger } from '../../common/logger.ts'
import { MemberSync } from '../mesh/member-sync.ts'
import { Membership, healthOf } from '../membership/membership.ts'
import { MembershipService } from '../membership/membership-service.ts'
import { Mesh } from '../mesh/mesh.ts'
import { MetricsStore } from '../metrics/metrics.ts'
import { mqttParts } from '../ingest/mqtt.ts'
import type { MqttParts } from '../ingest/mqtt.ts'
import { HOUR_MS, SensorStore } from '../ingest/sensor-store.ts'
import { LoopLag } from '../membership/loop-lag.ts'
import { Orchestrator } from '../coordination/orchestrator.ts'
import { PROBE_TICK_MS, Prober } from '../membership/prober.ts'
import { Store } from '../store/store.ts'
import { EventLog } from '../store/event-log.ts'
import { CoordinationRecords } from '../coordination/coordination-records.ts'
import { MemberRecords } from '../membership/member-records.ts'
import { VERSION } from '../../common/version.ts'
import { WorkRegistry } from '../coordination/work.ts'

/** A fresh agent listens this many beacon intervals before it may claim the coordinator role. */
const SETTLE_BEACONS = 2
/** How often the standby looks for models of mesh work it lacks, besides on every membership change. */
const STANDBY_INTERVAL_MS = 10_000

/**
 * One Noodle agent: the store, the libp2p mesh, membership (beacons, pings), the election, the orchestrator and
 * the local control API, started in that order and stopped in reverse.
 */
export class Agent {
  readonly mesh: Mesh
  readonly membership: Membership
  readonly election: Election
  private readonly lifecycle: Lifecycle

  private constructor (parts: {
    config: ResolvedConfig
    log: Logger
    startedAt: number
    store: Store
    coordination: CoordinationRecords
    disk: DiskStatus
    metrics: MetricsStore
    mesh: Mesh
    membership: Membership
    election: Election
    lag: LoopLag
    work: WorkRegistry
    dialer: PeerDialer
    service: MembershipService
    prober: Prober
    electionService: ElectionService
    orchestrator: Orchestrator
    reporter: HealthReporter
    sync: MemberSync
    sensors: SensorStore
    mqtt: MqttParts
    pool: InferencePool
    runtime: ModelRuntime
    exchange: ModelExchange
    standby: ModelStandby | null
    cameras: CameraManager
    prometheus: PrometheusMetrics
    operators: OperatorStore
  }) {
    this.mesh = parts.mesh
    this.membership = parts.membership
    this.election = parts.election
    const { config, log, mesh, operators } = parts
    // What the API reads and acts on; each routes module (agent/api/routes/) takes its share.
    const sources: ApiSources = {
      selfId: mesh.peerId.toString(),
      name: config.name,
      version: VERSION,
      startedAt: parts.startedAt,
      election: parts.election,
      membership: parts.membership,
      lag: parts.lag,
      disk: parts.disk,
      prometheus: parts.prometheus,
      counters: parts.metrics,
      decisions: parts.coordination,
      optimizer: parts.orchestrator,
      sensors: parts.sensors,
      mqtt: parts.mqtt,
      runtime: parts.runtime,
      exchange: parts.exchange,
      imports: { importDir: config.models.importDir, maxModelBytes: config.models.maxModelBytes, stagingDir: importStagingDir(config.dataDir) },
      cameras: parts.cameras,
      operators,
      publishEvent: async (event) => { await mesh.publish(systemEventCodec, event) },
      log
    }
    const api = controlApi({ config: config.api, routes: apiRoutes(sources), authenticate: (token) => operators.authenticate(token), log, counters: parts.metrics })
    this.lifecycle = new Lifecycle([
      ['store', parts.store],
      ['sensor store', parts.sensors],
      ['inference pool', parts.pool],
      ['runtime', parts.runtime],
      ...parts.mqtt.components,
      ['mesh', parts.mesh],
      ['dialer', parts.dialer],
      ['member sync', parts.sync],
      ['model exchange', parts.exchange],
      ...(parts.standby === null ? [] : [['model standby', parts.standby] as const]),
      ['membership', parts.service],
      ['prober', parts.prober],
      ['work', parts.work],
      ['cameras', parts.cameras],
      ['election', parts.electionService],
      ['orchestrator', parts.orchestrator],
      ['health', parts.reporter],
      ['api', api],
      // Last to start, first to stop: READY means every component is up.
      ['systemd', new SystemdNotifier({ log: parts.log, status: () => statusLine(statusView(sources)) })]
    ], parts.log)
  }

  static async create ({ config, log }: { config: ResolvedConfig, log: Logger }): Promise<Agent> {
    const startedAt = Date.now()
    ensureDataDir(config.dataDir)
    clearImportStaging(config.dataDir)
    const { privateKey, peerId } = await loadOrCreateIdentity(config.dataDir)
    const selfId = peerId.toString()
    const swarmKey = readSwarmKey(config.swarmKeyFile)
    const disk = new DiskStatus({ dataDir: config.dataDir, log })
    const store = new Store({ path: join(config.dataDir, 'noodle.db'), log, disk })
    const events = new EventLog({ store })
    const coordination = new CoordinationRecords({ store })
    const metrics = new MetricsStore()
    const hours = (h: number) => Math.round(h * HOUR_MS)
    const sensors = new SensorStore({
      db: store.database,
      log,
      retention: {
        rawMs: hours(config.mqtt.retention.rawHours),
        minuteMs: hours(config.mqtt.retention.minuteDays * 24),
        hourMs: hours(config.mqtt.retention.hourDays * 24)
      },
      maxSensors: config.mqtt.maxSensors
    })
    const mesh = await Mesh.create({ config, privateKey, swarmKey, metrics, log })
    const bootstrapPeers = bootstrapPeerIds(config.bootstrap)
    const membership = new Membership({
      self: { peerId: selfId, name: config.name, state: 'alive', role: 'member', addrs: [], lastSeen: startedAt, health: null },
      options: config.membership,
      // Bootstrap peers are members whatever the table holds (the dialer keeps them as members too).
      reserved: bootstrapPeers
    })
    const lag = new LoopLag({ expectedMs: PROBE_TICK_MS })
    const election = new Election({
      selfId,
      term: savedTerm(coordination, log),
      settleUntil: startedAt + SETTLE_BEACONS * config.health.intervalMs,
      // A rightful coordinator claims once settled; one that lets two more beacons pass without is passed over.
      claimGraceMs: (SETTLE_BEACONS + 2) * config.health.intervalMs
    })
    const credentials = readCameraCredentials(config.cameraCredentialsFile)
    checkOwnCameras(credentials, config.work, config.cameraCredentialsFile)
    const work = new WorkRegistry({ selfId, configured: config.work, accepts: { ...config.remoteWork, credentials: [...credentials.keys()] }, credentials })
    const dialer = new PeerDialer({ node: mesh.node, log, metrics, redialIntervalMs: config.membership.redialIntervalMs, bootstrapPeers })
    const sampler = new HealthSampler({ dataDir: config.dataDir, disk })
    const cpus = availableParallelism()
    const box = sampler.sample()
    const self: Candidate = {
      peerId: selfId,
      eligible: config.coordinator.eligible,
      priority: config.coordinator.priority,
      capability: capabilityOf({ accelerators: box.accelerators, cpus, memTotalBytes: box.memTotalBytes })
    }
    const reporter = new HealthReporter({
      mesh,
      sampler,
      log,
      name: config.name,
      version: VERSION,
      intervalMs: config.health.intervalMs,
      startedAt,
      describe: () => ({
        role: election.isCoordinator ? 'coordinator' : 'member',
        term: election.term,
        eligible: config.coordinator.eligible,
        priority: config.coordinator.priority,
        cpus,
        // The execution providers that have run a model here: measured, not guessed.
        providers: runtime.providers,
        models: runtime.modelLatencies().slice(0, MAX_BEACON_MODELS),
        work: work.advertised(),
        accepts: work.accepts,
        running: work.runningIds(),
        ingest: mqtt.ingest?.stats() ?? null
      }),
      onBeacon: (beacon) => { membership.updateSelf({ name: beacon.name, role: beacon.role, addrs: beacon.addrs, health: healthOf(beacon) }) }
    })
    const pool = new InferencePool({ log, cpus, metrics })
    const modelsDir = join(config.dataDir, 'models')
    const prometheus = new PrometheusMetrics({
      store: metrics,
      sources: {
        members: () => membership.list(),
        election: () => ({ term: election.term, isCoordinator: election.isCoordinator }),
        connections: () => mesh.node.getConnections().length,
        workRunning: () => work.runningIds().length,
        ingest: () => mqtt.ingest === null ? null : { ...mqtt.ingest.stats(), deadLetter: sensors.deadLetterCount() },
        cameras: () => cameras.list(),
        loopLagMs: () => lag.ms
      }
    })
    const runtime = new ModelRuntime({
      registry: new ModelRegistry({ db: store.database }),
      pool,
      modelsDir,
      log,
      onRun: (model, ms) => { prometheus.observeInference(model, ms) },
      onCompiled: (m) => {
        reporter.publishSoon()
        mesh.publish(modelCompiledCodec, { v: 1, ...compileResult(m), name: m.name, sizeBytes: m.sizeBytes, opset: m.opset })
          .catch((err: unknown) => { log.debug({ err }, 'model announcement not published') })
      }
    })
    const exchange = new ModelExchange({
      node: mesh.node, runtime, modelsDir, log, metrics, maxModelBytes: config.models.maxModelBytes, maxStandbyBytes: config.remoteWork.maxModelBytes, idleTimeoutMs: config.models.fetchIdleTimeoutMs
    })
    mesh.subscribe(modelCompiledCodec, (m, from) => {
      log.info({ peer: from.toString(), model: m.id, name: m.name, providers: m.providers }, 'a member compiled a model')
      exchange.observe(m, from)
    })
    const standby = config.models.standby
      ? new ModelStandby({ membership, running: () => work.running(), runtime, exchange, selfId, accelerators: box.accelerators.length, accepts: work.accepts, intervalMs: STANDBY_INTERVAL_MS, log, retainMs: config.models.standbyRetainMs, maxBytes: config.models.standbyMaxBytes })
      : null
    const mqtt = mqttParts({
      config,
      sensors,
      log,
      metrics,
      disk,
      describe: () => {
        const health = membership.get(selfId)?.health
        return {
          name: config.name,
          peerId: selfId,
          role: election.isCoordinator ? 'coordinator' : 'member',
          term: election.term,
          members: membership.count('alive'),
          cpuPct: health?.cpuPct ?? null,
          memUsedPct: health == null ? null : Math.round(health.memUsedBytes / health.memTotalBytes * 1000) / 10,
          tempC: health?.tempC ?? null,
          uptimeS: Math.round((Date.now() - startedAt) / 1000),
          ingest: mqtt.ingest?.stats() ?? null
        }
      }
    })
    const sharing = new ResultSharing({
      toMesh: async (message) => { await mesh.publish(cameraResultCodec, message) },
      toMqtt: (topic, payload) => { mqtt.session?.publish(topic, payload) },
      baseTopic: config.mqtt.baseTopic,
      node: config.name,
      log
    })
    const cameras = new CameraManager({
      credentials,
      work,
      runtime,
      exchange,
      db: store.database,
      log,
      onResult: (r) => {
        prometheus.observeCameraResult(r.camera, r.latencyMs)
        sharing.share(r)
      }
    })
    mesh.subscribe(cameraResultCodec, (r, from) => {
      log.debug({ peer: from.toString(), camera: r.camera, detections: r.detections.length }, 'camera result')
    })
    const prober = new Prober({ node: mesh.node, membership, lag, log, probeTimeoutMs: config.membership.probeTimeoutMs })
    const electionService = new ElectionService({
      election,
      membership,
      records: coordination,
      events,
      metrics,
      log,
      self: () => self,
      onChange: () => { reporter.publishSoon() }
    })
    const service = new MembershipService({
      mesh,
      membership,
      dialer,
      members: new MemberRecords({ store }),
      events,
      metrics,
      log,
      startedAt,
      tickMs: 1_000,
      onNews: () => { reporter.publishSoon() },
      onBeacon: (peer, beacon) => { electionService.observeBeacon(peer, beacon) },
      onDisconnect: () => { prober.probeDue() }
    })
    const orchestrator = new Orchestrator({
      mesh,
      election,
      observeClaim: (peer, term) => { electionService.observeClaim(peer, term, TOPICS.optimizationDecisions) },
      membership,
      work,
      records: coordination,
      metrics,
      log,
      evaluateIntervalMs: config.coordinator.evaluateIntervalMs,
      maxCpuPct: config.coordinator.maxCpuPct,
      orphanAfterMs: config.coordinator.orphanAfterMs,
      modelBytes: (id) => runtime.lookup(id)?.sizeBytes
    })
    work.on('change', () => { reporter.publishSoon() })
    work.on('advertised', () => { reporter.publishSoon() })
    const sync = new MemberSync({ node: mesh.node, membership, dialer, metrics, log })
    return new Agent({
      config, log, startedAt, store, coordination, disk, metrics, mesh, membership, election, lag, work, dialer, service, prober,
      electionService, orchestrator, reporter, sync, sensors, mqtt, pool, runtime, exchange, standby, cameras, prometheus,
      operators: new OperatorStore({ db: store.database })
    })
  }

  async start (): Promise<void> {
    await this.lifecycle.start()
  }

  async stop (): Promise<void> {
    await this.lifecycle.stop()
  }
}
