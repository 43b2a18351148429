import { availableParallelism } from 'node:os'
import { basename, join } from 'node:path'
import { ensureDataDir, loadOrCreateIdentity, readSwarmKey } from '../../identity/keys.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { API_FAILED_METRIC, API_REFUSED_METRIC, ControlApi, JsonReply, TextBody, parseBody, readJsonBody } from '../api/server.ts'
import { clearImportStaging, importStagingDir, withImportedModel } from '../api/model-import.ts'
import type { Access, Caller } from '../api/server.ts'
import { OperatorStore, RoleForbiddenError } from '../../identity/operators.ts'
import { LoginRequestSchema, RegisterRequestSchema, RemoveOperatorSchema } from '../../protocols/identity.ts'
import { systemEventCodec } from '../../protocols/events.ts'
import { PROMETHEUS_CONTENT_TYPE, PrometheusMetrics } from '../metrics/prometheus.ts'
import { SystemdNotifier } from './systemd.ts'
import { BenchRequestSchema, CompileRequestSchema, FetchRequestSchema, modelCompiledCodec } from '../../protocols/models.ts'
import { ModelExchange } from '../../runtime/model-exchange.ts'
import { ModelStandby } from '../../runtime/model-standby.ts'
import { mediaResultCodec } from '../../protocols/media.ts'
import { CameraManager } from '../../media/cameras.ts'
import { checkOwnCameras, readCameraCredentials } from '../../media/camera-credentials.ts'
import { redactCredentials } from '../../common/text.ts'
import { ForgetSensorRequestSchema } from '../../protocols/sensor-payload.ts'
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
import type { IngestStatus } from '../ingest/ingest.ts'
import type { EmbeddedBrokerStats } from '../ingest/mqtt-broker.ts'
import { HOUR_MS, SensorStore } from '../ingest/sensor-store.ts'
import { LoopLag } from '../membership/loop-lag.ts'
import { Orchestrator } from '../coordination/orchestrator.ts'
import { PROBE_TICK_MS, Prober } from '../membership/prober.ts'
import { Store } from '../store/store.ts'
import { VERSION } from '../../common/version.ts'
import { decisionView, modelView, nodeView, sensorReadingView } from '../api/views.ts'
import type { CameraListView, DecisionView, GossipView, ModelView, NodeView, SensorReadingView, StatusView } from '../api/views.ts'
import { WorkRegistry } from '../coordination/work.ts'

/**
 * Who may call what over the TCP listener (the Unix socket is trusted): logging in is open to all, reading to
 * viewers, acting on the mesh (optimize, models) to operators, and managing operators to admins.
 */
function accessOf (route: string): Access {
  if (route === 'POST /api/v1/identity/login') return 'public'
  if (route.includes(' /api/v1/identity/')) return 'admin'
  if (route.startsWith('GET ')) return 'viewer'
  return 'operator'
}

/** Who the audit log names for a request. */
function actorOf (caller: Caller): string {
  return caller.local ? 'local' : caller.username ?? 'anonymous'
}

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
  private readonly config: ResolvedConfig
  private readonly metrics: MetricsStore
  private readonly store: Store
  private readonly disk: DiskStatus
  private readonly lag: LoopLag
  private readonly orchestrator: Orchestrator
  private readonly sensors: SensorStore
  private readonly mqtt: MqttParts
  private readonly runtime: ModelRuntime
  private readonly cameras: CameraManager
  private readonly lifecycle: Lifecycle
  private readonly startedAt: number

  private constructor (parts: {
    config: ResolvedConfig
    log: Logger
    startedAt: number
    store: Store
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
    this.config = parts.config
    this.mesh = parts.mesh
    this.membership = parts.membership
    this.election = parts.election
    this.metrics = parts.metrics
    this.store = parts.store
    this.disk = parts.disk
    this.lag = parts.lag
    this.orchestrator = parts.orchestrator
    this.sensors = parts.sensors
    this.mqtt = parts.mqtt
    this.runtime = parts.runtime
    this.cameras = parts.cameras
    this.startedAt = parts.startedAt
    const api = new ControlApi({
      socketPath: parts.config.api.socketPath,
      log: parts.log,
      timeouts: { headersMs: parts.config.api.headersTimeoutMs, requestMs: parts.config.api.requestTimeoutMs },
      onRefused: (reason) => { parts.metrics.inc(API_REFUSED_METRIC, { reason }) },
      onFailed: (reason) => { parts.metrics.inc(API_FAILED_METRIC, { reason }) },
      routes: {
        'GET /api/v1/system/status': () => this.status(),
        'GET /api/v1/mesh/nodes': () => this.nodes(),
        'GET /api/v1/mesh/gossip': () => this.gossip(),
        'GET /api/v1/ahr/decisions': () => this.decisions(),
        'POST /api/v1/ahr/optimize': async () => await this.orchestrator.optimize(),
        'GET /api/v1/sensors': () => this.sensorReadings(),
        'POST /api/v1/sensors/forget': async (req) => {
          const { sensor, metric } = parseBody(ForgetSensorRequestSchema, await readJsonBody(req))
          return { forgotten: parts.sensors.forget(sensor, metric) }
        },
        'GET /api/v1/ingest': () => this.ingest(),
        'GET /api/v1/ingest/dead-letters': () => parts.sensors.deadLetterViews(),
        'GET /api/v1/models': () => this.models(),
        'GET /api/v1/cameras': () => this.cameraViews(),
        'GET /metrics': async () => new TextBody(await parts.prometheus.render(), PROMETHEUS_CONTENT_TYPE),
        // The Unix socket is trusted (its group is the box's operators): its requests act as "local".
        'POST /api/v1/identity/login': async (req) => {
          const { username, password } = parseBody(LoginRequestSchema, await readJsonBody(req))
          return await parts.operators.login(username, password, req.socket.remoteAddress ?? 'local')
        },
        'POST /api/v1/identity/register': async (req, caller) => {
          const request = parseBody(RegisterRequestSchema, await readJsonBody(req))
          // As the schema says: roles are given only on the trusted socket, so a stolen admin token cannot mint admins.
          if (!caller.local && request.role !== 'viewer') throw new RoleForbiddenError(request.role)
          const created = await parts.operators.register(request, actorOf(caller))
          parts.mesh.publish(systemEventCodec, { v: 1, type: 'operator.registered', at: Date.now(), userId: created.user_id, username: created.username })
            .catch((err: unknown) => { parts.log.debug({ err }, 'registration event not published') })
          const { user_id: userId, username, email, created_at: createdAt, status } = created
          return new JsonReply(201, { user_id: userId, username, email, created_at: createdAt, status })
        },
        'GET /api/v1/identity/users': () => parts.operators.list(),
        'POST /api/v1/identity/users/remove': async (req, caller) => {
          parts.operators.remove(parseBody(RemoveOperatorSchema, await readJsonBody(req)).username, actorOf(caller))
          return { removed: true }
        },
        'GET /api/v1/identity/audit': () => parts.operators.auditLog(),
        'POST /api/v1/models/compile': async (req, caller) => {
          const { file } = parseBody(CompileRequestSchema, await readJsonBody(req))
          const { importDir, maxModelBytes } = parts.config.models
          // Compiled from a private copy read through the checked descriptor: a file swapped after the check is not read.
          return await withImportedModel(file, { remote: !caller.local, importDir, maxBytes: maxModelBytes }, importStagingDir(parts.config.dataDir),
            async (staged) => await this.runtime.compile(staged, { name: basename(file) }))
        },
        'POST /api/v1/models/fetch': async (req) => {
          const { id } = parseBody(FetchRequestSchema, await readJsonBody(req))
          return await parts.exchange.fetch(id)
        },
        'POST /api/v1/models/bench': async (req) => {
          const { id, runs, shape } = parseBody(BenchRequestSchema, await readJsonBody(req))
          return await this.runtime.bench(id, { runs, shape })
        }
      },
      remote: parts.config.api.tcp === undefined
        ? undefined
        : { ...parts.config.api.tcp, authenticate: (token) => parts.operators.authenticate(token), access: accessOf }
    })
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
      ['systemd', new SystemdNotifier({ log: parts.log, status: () => this.statusLine() })]
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
      term: savedTerm(store, log),
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
    // A camera's results go to the mesh and to MQTT at most once a second (and at once when what it sees changes).
    const lastShared = new Map<string, { at: number, count: number }>()
    const cameras = new CameraManager({
      credentials,
      work,
      runtime,
      exchange,
      db: store.database,
      log,
      onResult: (r) => {
        prometheus.observeCameraResult(r.camera, r.latencyMs)
        const last = lastShared.get(r.camera)
        if (last !== undefined && r.at - last.at < 1_000 && last.count === r.detections.length) return
        lastShared.set(r.camera, { at: r.at, count: r.detections.length })
        const result = { v: 1 as const, camera: r.camera, at: r.at, latencyMs: r.latencyMs, detections: r.detections.slice(0, 64) }
        mesh.publish(mediaResultCodec, result).catch((err: unknown) => { log.debug({ err }, 'camera result not published') })
        mqtt.session?.publish(`${config.mqtt.baseTopic}/${config.name}/cameras/${r.camera}/detections`, JSON.stringify(result))
      }
    })
    mesh.subscribe(mediaResultCodec, (r, from) => {
      log.debug({ peer: from.toString(), camera: r.camera, detections: r.detections.length }, 'camera result')
    })
    const prober = new Prober({ node: mesh.node, membership, lag, log, probeTimeoutMs: config.membership.probeTimeoutMs })
    const electionService = new ElectionService({
      election,
      membership,
      store,
      metrics,
      log,
      self: () => self,
      onChange: () => { reporter.publishSoon() }
    })
    const service = new MembershipService({
      mesh,
      membership,
      dialer,
      store,
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
      store,
      metrics,
      log,
      evaluateIntervalMs: config.coordinator.evaluateIntervalMs,
      maxCpuPct: config.coordinator.maxCpuPct,
      orphanAfterMs: config.coordinator.orphanAfterMs,
      modelBytes: (id) => runtime.find(id)?.sizeBytes
    })
    work.on('change', () => { reporter.publishSoon() })
    work.on('advertised', () => { reporter.publishSoon() })
    const sync = new MemberSync({ node: mesh.node, membership, dialer, metrics, log })
    return new Agent({
      config, log, startedAt, store, disk, metrics, mesh, membership, election, lag, work, dialer, service, prober,
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

  status (): StatusView {
    const coordinator = this.election.coordinator
    return {
      peerId: this.mesh.peerId.toString(),
      name: this.config.name,
      version: VERSION,
      uptimeS: Math.round((Date.now() - this.startedAt) / 100) / 10,
      role: this.election.isCoordinator ? 'coordinator' : 'member',
      coordinator,
      coordinatorName: coordinator == null ? null : this.membership.get(coordinator)?.name ?? null,
      term: this.election.term,
      members: this.membership.count('alive'),
      loopLagMs: this.lag.ms,
      disk: this.disk.view()
    }
  }

  /** One line for `systemctl status`. */
  statusLine (): string {
    const s = this.status()
    return `${s.members} member(s) alive; ${s.role}; coordinator ${s.coordinatorName ?? s.coordinator ?? 'none yet'}, term ${s.term}`
  }

  nodes (): NodeView[] {
    return this.membership.list().map((m) => nodeView(m, this.election.coordinator))
  }

  decisions (): DecisionView[] {
    const names = new Map(this.membership.list().map((m) => [m.peerId, m.name]))
    return this.store.decisions().map((d) => decisionView(d, names))
  }

  sensorReadings (): SensorReadingView[] {
    return this.sensors.sensors().map(sensorReadingView)
  }

  /** Cameras this node runs, with their figures, and cameras other members run, by where. */
  cameraViews (): CameraListView[] {
    const local: CameraListView[] = this.cameras.list().map((c) => ({
      camera: c.camera,
      node: this.config.name,
      source: c.source === undefined ? null : redactCredentials(c.source),
      model: c.model ?? null,
      state: c.state,
      fpsIn: c.fpsIn ?? 0,
      fpsInferred: c.fpsInferred ?? 0,
      skipped: c.skipped ?? 0,
      latencyMs: c.latencyMs ?? null,
      detections: c.detections ?? null,
      decoder: c.decoder ?? null,
      error: c.error
    }))
    const seen = new Set(local.map((c) => c.camera))
    // A camera runs at home or wherever the coordinator moved it: its item is in its home's beacon.
    const members = this.membership.list()
    const cameraWork = new Map(members.flatMap((m) => m.health?.work ?? []).filter((w) => w.kind === 'camera').map((w) => [w.id, w]))
    const remote: CameraListView[] = []
    for (const m of members) {
      if (m.peerId === this.mesh.peerId.toString() || m.health == null || m.state !== 'alive') continue
      for (const id of m.health.running) {
        const w = cameraWork.get(id)
        if (w === undefined || seen.has(id)) continue
        seen.add(id)
        remote.push({ camera: id, node: m.name, source: w.source === undefined ? null : redactCredentials(w.source), model: w.model ?? null, state: 'remote', fpsIn: null, fpsInferred: null, skipped: null, latencyMs: null, detections: null, decoder: null, error: null })
      }
    }
    return [...local, ...remote]
  }

  models (): ModelView[] {
    return this.runtime.list().map(modelView)
  }

  ingest (): IngestStatus & { embeddedBroker: EmbeddedBrokerStats | null } {
    const embeddedBroker = this.mqtt.broker?.stats() ?? null
    if (this.mqtt.ingest !== null) return { ...this.mqtt.ingest.status(), embeddedBroker }
    // Nothing is ingested now, but totals from earlier runs are still in the store.
    return { ...this.sensors.totals(), deadLetter: this.sensors.deadLetterCount(), connected: false, broker: this.mqtt.session?.broker ?? null, embeddedBroker }
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
