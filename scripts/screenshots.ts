/**
 * `npm run screenshots`: the dashboard's two pictures in the README (docs/images/mesh.png and
 * docs/images/cameras.png), taken with Debian's chromium (headless, driven by playwright-core) from a real mesh
 * of three agents on this machine: porch-pi serves the page over HTTPS and runs a camera (a parcel on a porch,
 * found by the tests' object detector), garage-nuc runs the PP-OCR text detector on FFmpeg's test pattern when
 * that model is installed (a second parcel camera otherwise), shed-pi runs nothing.
 *
 * The browser tests (test/ui/) start their meshes and log in with the helpers below.
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import { apiGet, apiRequest } from '../agent/cli/client.ts'
import type { CameraListView } from '../agent/api/views.ts'
import { allSee, bootstrapAddr, startAgent, stopAgents, waitFor, writeSwarmKey } from './agents.ts'
import type { AgentProcess, StartOptions } from './agents.ts'
import { freePort } from './mosquitto.ts'

/** The browser: Debian's chromium unless NOODLE_CHROMIUM names another. */
export const CHROMIUM = process.env.NOODLE_CHROMIUM ?? '/usr/bin/chromium'

export const chromiumMissing = (): string | false => existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium, or set NOODLE_CHROMIUM)`

export function launchBrowser (): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
}

/** A page in a fresh context (its own cookies), trusting the mesh's self-signed certificate. */
export async function newPage (browser: Browser, viewport = { width: 1280, height: 800 }): Promise<Page> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport })
  return await context.newPage()
}

/** Fills the login form (its stable hooks: fields named username and password) and sends it. */
export async function submitLogin (page: Page, username: string, password: string): Promise<void> {
  await page.locator('input[name="username"]').fill(username)
  await page.locator('input[name="password"]').fill(password)
  await page.locator('form button[type="submit"]').click()
}

/** Opens the page and logs in; resolves once the mesh view lists a member. */
export async function logIn (page: Page, url: string, username: string, password: string): Promise<void> {
  await page.goto(url)
  await submitLogin(page, username, password)
  await page.locator('[data-peer-id]').first().waitFor({ timeout: 30_000 })
}

/** A self-signed certificate for 127.0.0.1. */
export function certificate (dir: string): { certFile: string, keyFile: string } {
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '1', '-subj', '/CN=noodle-dashboard', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  return { certFile, keyFile }
}

/** An operator account made on the agent's socket, where any role may be given. */
export async function addOperator (agent: AgentProcess, username: string, password: string, role: 'viewer' | 'operator' | 'admin'): Promise<void> {
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/register', 20_000,
    { username, email: `${username}@example.com`, password, profile: { first_name: username, last_name: 'Test' }, role })
}

/** A white parcel (80×50 at 100,60) on a dark 320×240 porch, always there: the test detector boxes it in red. */
export const PARCEL_SOURCE = 'lavfi:color=c=0x1c2733:size=320x240:rate=10,drawbox=x=100:y=60:w=80:h=50:color=white:t=fill'

/** A camera item running the test detector (written with writeDetectorModel to `model`) on `source`. */
export function parcelCamera (id: string, model: string, source = PARCEL_SOURCE): Record<string, unknown> {
  return { id, kind: 'camera', source, model, fps: 5, pinned: true, cpuPct: 10, detector: { labels: ['cat', 'parcel', 'dog'] }, motion: { enabled: false, refreshS: 5 } }
}

export interface DashboardMesh {
  agents: AgentProcess[]
  /** The page, on the first agent's HTTPS listener. */
  url: string
  /** The first agent's embedded MQTT broker. */
  mqttPort: number
  stop: () => Promise<void>
}

/**
 * Agents named `names`, joined through the first, which serves the page over HTTPS (`api.tcp` on 127.0.0.1 with a
 * certificate made here) and runs the embedded MQTT broker for `sensors/#`. `work` gives agents their work
 * items (cameras) by name; `env` their environment.
 */
export async function startDashboardMesh (o: { root: string, names: string[], work?: Record<string, unknown[]>, env?: Record<string, string>, start?: (s: StartOptions) => Promise<AgentProcess> }): Promise<DashboardMesh> {
  const start = o.start ?? startAgent
  const swarmKeyFile = writeSwarmKey(join(o.root, 'swarm.key'))
  const { certFile, keyFile } = certificate(o.root)
  const [port, mqttPort] = [await freePort(), await freePort()]
  const [first, ...rest] = o.names
  if (first === undefined) throw new Error('a mesh needs a member')
  const configOf = (name: string): Record<string, unknown> => ({ ...(o.work?.[name] === undefined ? {} : { work: o.work[name] }) })
  const host = await start({
    root: o.root,
    name: first,
    swarmKeyFile,
    logLevel: 'info',
    env: o.env,
    config: { ...configOf(first), api: { tcp: { host: '127.0.0.1', port, certFile, keyFile } }, mqtt: { topics: ['sensors/#'], embeddedBroker: { host: '127.0.0.1', port: mqttPort } } }
  })
  const agents = [host]
  const stop = (): Promise<void> => stopAgents(agents)
  try {
    const bootstrap = [await bootstrapAddr(host)]
    agents.push(...await Promise.all(rest.map((name) => start({ root: o.root, name, swarmKeyFile, bootstrap, logLevel: 'info', env: o.env, config: configOf(name) }))))
    await waitFor('every member to see every other alive', () => allSee(agents, agents, 'alive'), 30_000)
  } catch (err) {
    await stop()
    throw err
  }
  return { agents, url: `https://127.0.0.1:${port}/`, mqttPort, stop }
}

/** Waits until `agent` lists every camera of `ids` with a first result (its latest.jpg can be had). */
export async function camerasRunning (agent: AgentProcess, ids: string[], timeoutMs = 90_000): Promise<void> {
  await waitFor(`cameras ${ids.join(', ')} to run`, async () => {
    const list = await apiGet<CameraListView[]>(agent.socketPath, '/api/v1/cameras')
    return ids.every((id) => list.some((c) => c.camera === id && (c.state === 'remote' || (c.state === 'running' && c.fpsInferred !== null && (c.detections ?? 0) > 0))))
  }, timeoutMs)
}

async function main (): Promise<void> {
  const missing = chromiumMissing()
  if (missing !== false) throw new Error(missing)
  const out = join(import.meta.dirname, '..', 'docs', 'images')
  mkdirSync(out, { recursive: true })
  const root = mkdtempSync(join(tmpdir(), 'nd-shots-'))
  const { writeDetectorModel } = await import('./detector-models.ts')
  const model = join(root, 'parcels.onnx')
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320 })
  const ocr = join(import.meta.dirname, '..', 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_PP-OCRv4_det_infer.onnx')
  const pattern = existsSync(ocr)
    ? { id: 'pattern', kind: 'camera', source: 'lavfi:testsrc=size=640x480:rate=10', model: ocr, size: 640, fps: 2, channels: 'bgr', cpuPct: 60, pinned: true }
    : parcelCamera('driveway', model, PARCEL_SOURCE.replace('x=100:y=60', 'x=180:y=120'))
  const mesh = await startDashboardMesh({ root, names: ['porch-pi', 'garage-nuc', 'shed-pi'], work: { 'porch-pi': [parcelCamera('porch', model)], 'garage-nuc': [pattern] } })
  let browser: Browser | undefined
  let feeder: NodeJS.Timeout | undefined
  try {
    const [host] = mesh.agents as [AgentProcess]
    await addOperator(host, 'admin', 'a long and quiet river', 'admin')
    // Two sensors publishing once a second, so the mesh view shows an ingest rate.
    feeder = setInterval(() => {
      for (const t of ['kitchen/temperature', 'greenhouse/humidity']) {
        execFile('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mesh.mqttPort), '-q', '1', '-t', `sensors/${t}`, '-m', (20 + Math.random() * 5).toFixed(2)], () => {})
      }
    }, 1_000)
    await camerasRunning(host, ['porch'])
    await camerasRunning(mesh.agents[1] as AgentProcess, [String(pattern.id)])
    browser = await launchBrowser()
    const page = await newPage(browser, { width: 1280, height: 800 })
    await logIn(page, mesh.url, 'admin', 'a long and quiet river')
    await page.waitForTimeout(3_000) // health and links of every member
    await page.screenshot({ path: join(out, 'mesh.png') })
    await page.locator('[data-view="cameras"]').click()
    await page.locator('[data-camera] img').first().waitFor({ timeout: 20_000 })
    await page.waitForTimeout(3_000)
    await page.screenshot({ path: join(out, 'cameras.png') })
    process.stdout.write(`${join(out, 'mesh.png')} ${readFileSync(join(out, 'mesh.png')).length} bytes\n${join(out, 'cameras.png')} ${readFileSync(join(out, 'cameras.png')).length} bytes\n`)
  } finally {
    clearInterval(feeder)
    await browser?.close()
    await mesh.stop()
    rmSync(root, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`screenshots: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  })
}
