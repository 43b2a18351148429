import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { ensureDataDir, loadOrCreateIdentity, readSwarmKey } from '../../identity/keys.ts'
import { apiRoutes, controlApi } from '../api/control.ts'
import { StaticFiles } from '../api/static-files.ts'
import { LIVE_DROPPED_METRIC, LiveFeed } from '../api/live.ts'
import type { ListenerAddresses } from '../api/routes/page.ts'
import { nodesView } from '../api/routes/mesh.ts'
import { cameraViews } from '../api/routes/cameras.ts'
import { decisionsView } from '../api/routes/coordination.ts'
import type { ApiSources } from '../api/control.ts'
import { clearImportStaging, importStagingDir } from '../api/model-import.ts'
import { statusLine, statusView } from '../api/routes/system.ts'
import { OperatorStore } from '../../identity/operators.ts'
import { systemEventCodec } from '../../protocols/events.ts'
import { PrometheusMetrics } from '../metrics/prometheus.ts'
import { LatencyMetrics } from '../metrics/latencies.ts'
import { SystemdNotifier } from './systemd.ts'
import { modelCompiledCodec } from '../../protocols/models.ts'
import { ModelExchange } from '../../runtime/model-exchange.ts'
import { ModelStandby } from '../../runtime/model-standby.ts'
import { cameraEventCodec, cameraResultCodec } from '../../protocols/media.ts'
import { CameraManager } from '../../media/cameras.ts'
import { ResultSharing } from '../../media/result-sharing.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import { AnnouncedEvents, CameraEventStore, CameraEvents } from '../../media/camera-events.ts'
import { CameraSnapshots, SnapshotStore } from '../../media/snapshots.ts'
import { checkOwnCameras, readCameraCredentials } from '../../media/camera-credentials.ts'
import type { CameraCredentials } from '../../media/camera-credentials.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { HeavyModules } from '../../runtime/loader.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import { CANDIDATE_PROVIDERS, ModelRuntime, compileResult } from '../../runtime/model-runtime.ts'
import { NO_FAULTS } from '../../runtime/faults.ts'
import type { Faults } from '../../runtime/faults.ts'
import { bootstrapPeerIds } from '../config/config.ts'
import type { ResolvedConfig } from '../config/config.ts'
import { PeerDialer } from '../mesh/dialer.ts'
import { Election, capabilityOf } from '../coordination/election.ts'
import type { Candidate } from '../coordination/election.ts'
import { ElectionService, savedTerm } from '../coordination/election-service.ts'
import { MAX_BEACON_MODELS, healthCodec, linksOf } from '../../protocols/health.ts'
import { HealthReporter, beaconIntervalMs } from '../membership/health-reporter.ts'
import type { HealthReporterComponents } from '../membership/health-reporter.ts'
import { DiskStatus, HealthSampler } from '../membership/health.ts'
import type { HealthSample } from '../membership/health.ts'
import { Lifecycle } from './lifecycle.ts'
import type { Logger } from '../../common/logger.ts'
import { MemberSync } from '../mesh/member-sync.ts'
import { Membership } from '../membership/membership.ts'
import { MemberBus } from '../membership/bus.ts'
import { MembershipService } from '../membership/membership-service.ts'
import { LeaveAnnouncement } from '../membership/leave.ts'
import { Mesh } from '../mesh/mesh.ts'
import { MetricsStore } from '../metrics/metrics.ts'
import { mqttParts } from '../ingest/mqtt.ts'
import type { MqttParts } from '../ingest/mqtt.ts'
import type { Ingest } from '../ingest/ingest.ts'
import { HOUR_MS, SensorStore } from '../ingest/sensor-store.ts'
import { LoopLag } from '../membership/loop-lag.ts'
import { Orchestrator } from '../coordination/orchestrator.ts'
import { PROBE_TICK_MS, Prober } from '../membership/prober.ts'
import { Store } from '../store/store.ts'
import { HealthHistory } from '../store/health-history.ts'
import { SensorSeries } from '../ingest/sensor-series.ts'
import { ViewExchange } from '../mesh/view-exchange.ts'
import { localViews } from '../api/local-views.ts'
import { DAY_MS } from '../../common/schema.ts'
import { EventLog } from '../store/event-log.ts'
import { CoordinationRecords } from '../coordination/coordination-records.ts'
import { MemberRecords } from '../membership/member-records.ts'
import { MemberBeacons } from '../membership/member-beacons.ts'
import { PingResponder } from '../membership/ping-responder.ts'
import { PingStreams } from '../membership/ping-streams.ts'
import { VERSION } from '../../common/version.ts'
import { WorkRegistry } from '../coordination/work.ts'

/**
 * A fresh agent listens this many `health.intervalMs` before it may claim the coordinator role: every member
 * answers a new listener with its whole beacon at once, so the longer pulse interval of a large mesh
 * (`health.intervalPerMemberMs`) does not lengthen it.
 */
const SETTLE_BEACONS = 2
/** How often the standby looks for models of mesh work it lacks, besides on every membership change. */
const STANDBY_INTERVAL_MS = 10_000

/**
 * One Noodle agent: the store, the libp2p mesh, membership (beacons, pings), the election, the orchestrator, MQTT
 * ingest, the model runtime and cameras, and the local control API, started in that order and stopped in reverse.
 * `create` is the composition root: it builds each part once its dependencies exist (no part reaches for one built
 * later) and only wires; the parts talk through their dependencies and the MemberBus.
 */
export class Agent {
  readonly mesh: Mesh
  readonly membership: Membership
  readonly election: Election
  private readonly lifecycle: Lifecycle

  private constructor (parts: { mesh: Mesh, membership: Membership, election: Election, lifecycle: Lifecycle }) {
    this.mesh = parts.mesh
    this.membership = parts.membership
    this.election = parts.election
    this.lifecycle = parts.lifecycle
  }

  /** `modules`: where onnxruntime and node-av are looked for (tests give names that do not exist, as a core release lacks them). */
  static async create ({ config, log, modules = new HeavyModules(), faults = NO_FAULTS }: {
    config: ResolvedConfig, log: Logger, modules?: HeavyModules
    /** Faults injected into inference (NOODLE_FAULTS): simulated providers, devices pulled out. */
    faults?: Faults
  }): Promise<Agent> {
    // A camera or model configured here that this install cannot run (a core release): a named error, before
    // anything is opened.
    modules.requireFor(config.work)
    const base = await openBase(config, log, modules)
    const { selfId, startedAt, store, metrics } = base
    const mesh = await Mesh.create({ config, privateKey: base.privateKey, swarmKey: base.swarmKey, metrics, log })
    const bus = new MemberBus()
    const members = buildMembership(base, mesh, bus)
    const { membership } = members
    const { work, credentials } = buildWork(config, selfId, base.modules)
    const sampler = new HealthSampler({ dataDir: config.dataDir, disk: base.disk })
    const box = { ...sampler.sample(), cpus: availableParallelism() }
    const latencies = new LatencyMetrics({ registry: metrics.registry })
    const models = buildModels(base, { mesh, bus, membership, work, latencies, box, faults })
    const { runtime } = models
    const coordination = buildCoordination(base, { mesh, bus, membership, work, runtime, box })
    const { election } = coordination
    const mqtt = mqttParts({ config, sensors: base.sensors, log, metrics, disk: base.disk, describe: mqttHealth(base, membership, election) })
    const cameras = buildCameras(base, { mesh, mqtt, work, credentials, models, latencies, membership })
    const reporter = new HealthReporter({
      mesh,
      bus,
      work,
      sampler,
      log,
      name: config.name,
      version: VERSION,
      intervalMs: config.health.intervalMs,
      intervalPerMemberMs: config.health.intervalPerMemberMs,
      members: () => membership.count('alive') + membership.count('suspect'),
      startedAt,
      describe: beaconFacts(config, { election, runtime, work, mqtt, box, mesh, membership })
    })
    const prometheus = new PrometheusMetrics({
      store: metrics,
      sources: {
        members: () => membership.list(),
        election: () => ({ term: election.term, isCoordinator: election.isCoordinator }),
        connections: () => mesh.node.getConnections().length,
        peers: () => mesh.node.getPeers().length,
        workRunning: () => work.runningIds().length,
        ingest: () => mqtt.ingest === null ? null : { ...mqtt.ingest.stats(), deadLetter: base.sensors.deadLetterCount() },
        cameras: () => cameras.manager.list(),
        loopLagMs: () => members.lag.ms
      }
    })
    const operators = new OperatorStore({ db: store.database })
    // Members' health a minute at a time, sensor series, and views of other members' data (`?node=`).
    const healthHistory = new HealthHistory({ store, bus, selfId, maxMembers: config.membership.maxMembers })
    const views = new ViewExchange({ node: mesh.node, membership, local: async (request) => await localViews(sources)(request), metrics, log, maxMembers: config.membership.maxMembers, share: config.ui.shareViews })
    // The web page's files, and where the API's listeners are bound once they are (`noodle ui`).
    const page = new StaticFiles()
    const listening: ListenerAddresses = {}
    // What the API reads and acts on; each routes module (agent/api/routes/) takes its share.
    const sources: ApiSources = {
      selfId,
      name: config.name,
      version: VERSION,
      startedAt,
      election,
      membership,
      lag: members.lag,
      disk: base.disk,
      meshConnections: config.mesh.connections,
      prometheus,
      counters: metrics,
      decisions: base.coordination,
      optimizer: coordination.orchestrator,
      sensors: base.sensors,
      mqtt,
      runtime,
      exchange: models.exchange,
      imports: { importDir: config.models.importDir, maxModelBytes: config.models.maxModelBytes, stagingDir: importStagingDir(config.dataDir) },
      cameras: cameras.manager,
      cameraEvents: cameras.eventStore,
      snapshots: cameras.snapshots,
      operators,
      publishEvent: async (event) => { await mesh.publish(systemEventCodec, event) },
      log,
      page,
      listening,
      healthHistory,
      series: new SensorSeries({ db: store.database }),
      views
    }
    // The page's live feed: what the API's GETs answer, pushed as it changes.
    const live = new LiveFeed({
      sources: {
        nodes: () => nodesView(sources),
        cameras: () => cameraViews(sources),
        events: () => cameras.eventStore.list({ limit: 50 }),
        decisions: () => decisionsView(sources).slice(0, 50)
      },
      authenticate: (token) => operators.authenticate(token),
      log,
      onDropped: (reason) => { metrics.inc(LIVE_DROPPED_METRIC, { reason }) }
    })
    const api = controlApi({ config: config.api, ui: config.ui, routes: apiRoutes(sources), authenticate: (token) => operators.authenticate(token), log, counters: metrics, live, listening })
    const lifecycle = new Lifecycle([
      ['store', store],
      // First after the store: prom-client's process counters (CPU, GC, event-loop lag) count from here, so the
      // other parts' start is in them; it reads its sources only when scraped, and stops after the API.
      ['metrics', prometheus],
      ['sensor store', base.sensors],
      // Before the runtime and cameras that report to them.
      ['latencies', latencies],
      ['inference pool', models.pool],
      ['runtime', runtime],
      ...mqtt.components,
      ['mesh', mesh],
      ['dialer', members.dialer],
      ['member sync', members.sync],
      ['model exchange', models.exchange],
      ['views', views],
      ['model announcements', models.announcements],
      ...(models.standby === null ? [] : [['model standby', models.standby] as const]),
      // The leave goes out once the orchestrator and the election have stopped (the reverse order), while the mesh
      // still runs: a departing coordinator places nothing after its goodbye.
      ['leave', members.leave],
      ['work', work],
      // The MemberBus's listeners start before its emitters (and stop after them), so no event is lost: the
      // election hears the beacons and claims the membership service and the orchestrator pass on, the prober the
      // disconnections, the membership service our own beacons. (The reporter answers news with its first
      // beacon, sent at its start.) The orchestrator reads decisions before any beacon is heard or sent, so none
      // addressed to us goes unread. test/agent/main/start-order.test.ts keeps this order.
      ['health history', healthHistory],
      ['election', coordination.electionService],
      ['orchestrator', coordination.orchestrator],
      ['ping responder', members.pingResponder],
      ['prober', members.prober],
      ['membership', members.service],
      // Events take the cameras' results: they start before the cameras and stop after them.
      // Snapshots on disk: indexed (in the background) before events write any.
      ['snapshots', cameras.snapshotStore],
      ['camera events', cameras.events],
      ['cameras', cameras.manager],
      ['camera results', cameras.results],
      ['camera event announcements', cameras.announced],
      ['announced event sweep', cameras.announcements],
      ['health', reporter],
      ['web page', page],
      ['api', api],
      // After the API, so it stops first: its clients' upgraded sockets are closed before the API waits for its
      // connections to end (an open page would hold the stop until systemd's timeout).
      ['live feed', live],
      // Last to start, first to stop: READY means every component is up.
      ['systemd', new SystemdNotifier({ log, status: () => statusLine(statusView(sources)) })]
    ], log)
    return new Agent({ mesh, membership, election, lifecycle })
  }

  /** The parts' names in start order (they stop in reverse). */
  get startOrder (): string[] {
    return this.lifecycle.names
  }

  async start (): Promise<void> {
    await this.lifecycle.start()
  }

  async stop (): Promise<void> {
    await this.lifecycle.stop()
  }
}

/** What every subsystem stands on: the node's identity, its data directory's store and records, the metrics registry. */
interface Base {
  config: ResolvedConfig
  log: Logger
  startedAt: number
  selfId: string
  disk: DiskStatus
  store: Store
  events: EventLog
  coordination: CoordinationRecords
  metrics: MetricsStore
  sensors: SensorStore
  /** Whether onnxruntime and node-av are installed (a core release has neither): loaded only when work lands. */
  modules: HeavyModules
}

/** The box, as sampled once at start: what it can run (the election ranks it by this). */
type Box = HealthSample & { cpus: number }

async function openBase (config: ResolvedConfig, log: Logger, modules: HeavyModules): Promise<Base & { privateKey: PrivateKey, swarmKey: Uint8Array }> {
  const startedAt = Date.now()
  ensureDataDir(config.dataDir)
  clearImportStaging(config.dataDir)
  const { privateKey, peerId } = await loadOrCreateIdentity(config.dataDir)
  const swarmKey = readSwarmKey(config.swarmKeyFile)
  const disk = new DiskStatus({ dataDir: config.dataDir, log })
  const store = Store.open({ path: join(config.dataDir, 'noodle.db'), log, disk, retention: { camera_events: { maxAgeMs: config.events.retentionDays * DAY_MS } } })
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
  return {
    config,
    log,
    startedAt,
    selfId: peerId.toString(),
    privateKey,
    swarmKey,
    disk,
    store,
    events: new EventLog({ store }),
    coordination: new CoordinationRecords({ store }),
    metrics: new MetricsStore(),
    sensors,
    modules
  }
}

/** Who is in the mesh: the table, the service that feeds it, the dialer, member sync and the prober. */
function buildMembership ({ config, log, selfId, startedAt, store, events, metrics }: Base, mesh: Mesh, bus: MemberBus) {
  // mesh.connections > 0: the table, the prober and the membership service each behave as a partial mesh needs.
  const partialMesh = config.mesh.connections > 0
  const bootstrapPeers = bootstrapPeerIds(config.bootstrap)
  const membership = new Membership({
    self: { peerId: selfId, name: config.name, state: 'alive', role: 'member', addrs: [], lastSeen: startedAt, health: null },
    options: { ...config.membership, partialMesh, beaconIntervalMs: (members) => beaconIntervalMs(config.health.intervalMs, config.health.intervalPerMemberMs, members) },
    // Bootstrap peers are members whatever the table holds (the dialer keeps them as members too).
    reserved: bootstrapPeers
  })
  const lag = new LoopLag({ expectedMs: PROBE_TICK_MS })
  const dialer = new PeerDialer({
    node: mesh.node, log, metrics, redialIntervalMs: config.membership.redialIntervalMs, bootstrapPeers, maxConnections: config.mesh.connections,
    listedDead: () => membership.unsorted().flatMap((m) => m.state === 'dead' ? [m.peerId] : [])
  })
  return {
    membership,
    lag,
    dialer,
    sync: new MemberSync({ node: mesh.node, membership, dialer, bus, deliver: (wire, from) => { mesh.deliver(healthCodec, wire, from) }, metrics, log }),
    service: new MembershipService({
      mesh, bus, membership, beacons: new MemberBeacons({ maxMembers: config.membership.maxMembers }), dialer, members: new MemberRecords({ store }), events, metrics, log, tickMs: 1_000, verdicts: partialMesh
    }),
    leave: new LeaveAnnouncement({ mesh, log, startedAt }),
    pingResponder: new PingResponder({ node: mesh.node, membership }),
    prober: new Prober({ node: mesh.node, membership, bus, lag, log, metrics, probeTimeoutMs: config.membership.probeTimeoutMs, pings: new PingStreams({ node: mesh.node }), release: partialMesh ? (peer) => { dialer.release(peer) } : undefined })
  }
}

/** The work configured here, with the camera credentials it may need (checked against it). */
function buildWork (config: ResolvedConfig, selfId: string, modules: HeavyModules): { work: WorkRegistry, credentials: CameraCredentials } {
  const credentials = readCameraCredentials(config.cameraCredentialsFile)
  checkOwnCameras(credentials, config.work, config.cameraCredentialsFile)
  const { inference, media } = modules.available()
  // Without both modules the box takes no camera or model work from elsewhere, and its beacon says so.
  const remote = inference && media ? config.remoteWork : { ...config.remoteWork, sources: [], maxModelBytes: 0 }
  const work = new WorkRegistry({ selfId, configured: config.work, accepts: { ...remote, credentials: [...credentials.keys()] }, credentials })
  return { work, credentials }
}

/** The models: the inference pool, the runtime, the exchange between members and the standby copies. */
function buildModels ({ config, log, selfId, store, metrics, modules }: Base, { mesh, bus, membership, work, latencies, box, faults }: {
  mesh: Mesh, bus: MemberBus, membership: Membership, work: WorkRegistry, latencies: LatencyMetrics, box: Box, faults: Faults
}) {
  const pool = new InferencePool({ log, cpus: box.cpus, metrics, modules, faults })
  const modelsDir = join(config.dataDir, 'models')
  const runtime = new ModelRuntime({
    registry: new ModelRegistry({ db: store.database }),
    pool,
    modelsDir,
    log,
    onRun: (model, ms) => { latencies.observeInference(model, ms) },
    // Simulated providers are tried first: a box rehearsing an accelerator's failure runs on it until it fails.
    providers: [...faults.simulate, ...CANDIDATE_PROVIDERS],
    // Our beacon says why we are degraded: news.
    onDegraded: () => { bus.emit('news') },
    onCompiled: (m) => {
      // Our beacon lists the models we run: news.
      bus.emit('news')
      mesh.publish(modelCompiledCodec, { v: 1, ...compileResult(m), name: m.name, sizeBytes: m.sizeBytes, opset: m.opset })
        .catch((err: unknown) => { log.debug({ err }, 'model announcement not published') })
    }
  })
  const exchange = new ModelExchange({
    node: mesh.node, runtime, modelsDir, log, metrics, maxModelBytes: config.models.maxModelBytes, maxStandbyBytes: config.remoteWork.maxModelBytes, idleTimeoutMs: config.models.fetchIdleTimeoutMs
  })
  const announcements = mesh.reader(modelCompiledCodec, (m, from) => {
    log.info({ peer: from.toString(), model: m.id, name: m.name, providers: m.providers }, 'a member compiled a model')
    exchange.observe(m, from)
  })
  // Standby copies are fetched and checked without onnxruntime, but only for work this box could run.
  const standby = config.models.standby && modules.available().inference
    ? new ModelStandby({ membership, running: () => work.running(), runtime, exchange, selfId, accelerators: box.accelerators.length, accepts: work.accepts, intervalMs: STANDBY_INTERVAL_MS, log, retainMs: config.models.standbyRetainMs, maxBytes: config.models.standbyMaxBytes })
    : null
  return { pool, runtime, exchange, announcements, standby }
}

/** Who coordinates (the election and its service), and the orchestrator that places work and applies decisions. */
function buildCoordination ({ config, log, selfId, startedAt, events, coordination, metrics }: Base, { mesh, bus, membership, work, runtime, box }: {
  mesh: Mesh, bus: MemberBus, membership: Membership, work: WorkRegistry, runtime: ModelRuntime, box: Box
}) {
  const election = new Election({
    selfId,
    term: savedTerm(coordination, log),
    settleUntil: startedAt + SETTLE_BEACONS * config.health.intervalMs,
    // A rightful coordinator claims once settled; one that lets two more beacons pass without is passed over.
    claimGraceMs: (SETTLE_BEACONS + 2) * config.health.intervalMs
  })
  const self: Candidate = {
    peerId: selfId,
    eligible: config.coordinator.eligible,
    priority: config.coordinator.priority,
    capability: capabilityOf({ accelerators: box.accelerators, cpus: box.cpus, memTotalBytes: box.memTotalBytes })
  }
  const electionService = new ElectionService({ election, membership, records: coordination, events, metrics, log, self: () => self, bus })
  const orchestrator = new Orchestrator({
    mesh,
    election,
    bus,
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
  return { election, electionService, orchestrator }
}

/** What this node's beacon says besides the box's sample: its role and rank, what it runs and can run, its ingest, its links. */
function beaconFacts (config: ResolvedConfig, { election, runtime, work, mqtt, box, mesh, membership }: {
  election: Election, runtime: ModelRuntime, work: WorkRegistry, mqtt: MqttParts, box: Box, mesh: Mesh, membership: Membership
}): HealthReporterComponents['describe'] {
  return () => ({
    role: election.isCoordinator ? 'coordinator' : 'member',
    term: election.term,
    eligible: config.coordinator.eligible,
    priority: config.coordinator.priority,
    cpus: box.cpus,
    // The execution providers that have run a model here: measured, not guessed.
    providers: runtime.providers,
    models: runtime.modelLatencies().slice(0, MAX_BEACON_MODELS),
    work: work.advertised(),
    accepts: work.accepts,
    running: work.runningIds(),
    ingest: mqtt.ingest?.stats() ?? null,
    degraded: runtime.degraded(),
    unable: work.unableList(),
    // Connections to members only: a tool holding the swarm key (mesh-publish) is no link of the mesh.
    links: linksOf(mesh.node.getConnections().map((c) => c.remotePeer.toString()), (peer) => membership.get(peer) !== undefined)
  })
}

/** The figures the box publishes on MQTT, with its ingest's. */
function mqttHealth ({ config, selfId, startedAt }: Base, membership: Membership, election: Election) {
  return (ingest: Ingest | null) => {
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
      ingest: ingest?.stats() ?? null
    }
  }
}

/**
 * The cameras this node runs, where their results go (the mesh and MQTT, see ResultSharing), and the events their
 * objects make (CameraEvents); the events other members announce (AnnouncedEvents).
 */
function buildCameras ({ config, log, store, modules, selfId, metrics }: Base, { mesh, mqtt, work, credentials, models, latencies, membership }: {
  mesh: Mesh, mqtt: MqttParts, work: WorkRegistry, credentials: CameraCredentials, models: { runtime: ModelRuntime, exchange: ModelExchange }, latencies: LatencyMetrics, membership: Membership
}) {
  const sharing = new ResultSharing({
    toMesh: async (message) => { await mesh.publish(cameraResultCodec, message) },
    toMqtt: (topic, payload) => { mqtt.session?.publish(topic, payload) },
    baseTopic: config.mqtt.baseTopic,
    node: config.name,
    log
  })
  const eventStore = new CameraEventStore({ store })
  const snapshotStore = new SnapshotStore({
    dir: join(config.dataDir, 'snapshots'),
    maxBytes: config.events.snapshotMaxBytes,
    events: { ownIds: (ids) => eventStore.idsOf(selfId, ids) },
    log
  })
  const snapshots = new CameraSnapshots({
    store: snapshotStore,
    events: { find: (id) => eventStore.byId(id).map((e) => ({ node: e.node, peer: e.peer, own: e.peer === selfId })) },
    log
  })
  const events = new CameraEvents({
    snapshots,
    store: eventStore,
    toMesh: async (message) => { await mesh.publish(cameraEventCodec, message) },
    toMqtt: (topic, payload, retain) => mqtt.session?.publish(topic, payload, { retain }) ?? false,
    baseTopic: config.mqtt.baseTopic,
    node: config.name,
    peer: selfId,
    log
  })
  const manager = new CameraManager({
    modules,
    credentials,
    work,
    runtime: models.runtime,
    exchange: models.exchange,
    db: store.database,
    log,
    onResult: (r, item) => {
      latencies.observeCameraResult(r.camera, r.latencyMs)
      sharing.share(r)
      events.observe(r, item)
    },
    onStopped: (camera) => { events.cameraStopped(camera) }
  })
  // Other members' camera results: logged (at debug).
  const results = mesh.reader(cameraResultCodec, (r, from) => {
    log.debug({ peer: from.toString(), camera: r.camera, detections: r.detections.length }, 'camera result')
  })
  const announcements = new AnnouncedEvents({
    store: eventStore,
    self: selfId,
    sender: (peer) => {
      const m = membership.get(peer)
      return m === undefined || m.state !== 'alive' || m.health == null ? undefined : { name: m.name, running: m.health.running }
    },
    refuse: (reason) => { metrics.inc(REJECTED_METRIC, { topic: cameraEventCodec.topic, reason }) }
  })
  const announced = mesh.reader(cameraEventCodec, (m, from) => { announcements.take(m, from.toString()) })
  return { manager, results, events, eventStore, announced, announcements, snapshotStore, snapshots }
}
