/**
 * The dashboard in a real browser (Debian's chromium, headless, driven by playwright-core) against a real mesh of
 * three agents: alpha serves the page over HTTPS, runs a camera with the test detector and the embedded MQTT
 * broker; beta runs another camera (its frame and figures reach the page through alpha, `?node=`); gamma is
 * killed at the end. One mesh and one browser for every case, in
 * order. Every page visited is saved as a PNG in a temporary folder (NOODLE_UI_SHOTS names another), kept after
 * the run and printed.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Browser, Page } from 'playwright-core'
import { apiGet } from '../../agent/cli/client.ts'
import type { SensorReadingView } from '../../agent/api/views.ts'
import { commandExists, startAgent, tempDir, waitFor } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'
import { addOperator, camerasRunning, chromiumMissing, launchBrowser, logIn, newPage, parcelCamera, startDashboardMesh, submitLogin } from '../../scripts/screenshots.ts'
import type { DashboardMesh } from '../../scripts/screenshots.ts'

const ADMIN = { username: 'admin', password: 'a long and quiet river' }
const VIEWER = { username: 'watcher', password: 'the birds on the wire' }
const HOSTILE = '<img src=x onerror=alert(1)>'
/** The first load of the page (its files and the API calls that fill the mesh view) must stay under this. */
const FIRST_LOAD_LIMIT = 300 * 1024

const missing = chromiumMissing() || (commandExists('mosquitto_pub') ? false : 'mosquitto_pub is missing (apt-get install mosquitto-clients)')
if (missing !== false) {
  t.comment(`skipped: ${missing}`)
  t.pass('skipped')
} else {
  const shots = process.env.NOODLE_UI_SHOTS ?? mkdtempSync(join(tmpdir(), 'noodle-ui-'))
  mkdirSync(shots, { recursive: true })
  t.comment(`screenshots in ${shots}`)

  const root = tempDir(t)
  const model = join(root, 'parcels.onnx')
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320 })
  let mesh: DashboardMesh
  let browser: Browser
  let admin: Page
  /** What the page did that it should not: CSP violations, script errors, dialogs. */
  const trouble: string[] = []
  let shot = 0
  const snap = async (page: Page, name: string): Promise<void> => {
    shot += 1
    await page.screenshot({ path: join(shots, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true })
  }
  const watch = (page: Page): Page => {
    page.on('console', (m) => { if (/Content.Security.Policy|Refused to/i.test(m.text())) trouble.push(`console: ${m.text()}`) })
    page.on('pageerror', (e) => { trouble.push(`page error: ${e.message}`) })
    page.on('dialog', (d) => { trouble.push(`dialog: ${d.message()}`); d.dismiss().catch(() => {}) })
    return page
  }

  t.before(async () => {
    mesh = await startDashboardMesh({ root, names: ['alpha', 'beta', 'gamma'], work: { alpha: [parcelCamera('porch', model)], beta: [parcelCamera('driveway', model)] }, start: startAgent })
    await addOperator(mesh.agents[0] as AgentProcess, ADMIN.username, ADMIN.password, 'admin')
    await addOperator(mesh.agents[0] as AgentProcess, VIEWER.username, VIEWER.password, 'viewer')
    browser = await launchBrowser()
  })
  t.teardown(async () => {
    await browser?.close()
    await mesh?.stop()
  })

  t.test('a wrong password is refused, the error shown', async (t) => {
    const page = watch(await newPage(browser))
    await page.goto(mesh.url)
    await submitLogin(page, ADMIN.username, 'not the password')
    const error = page.locator('[data-error]')
    await error.waitFor({ state: 'visible', timeout: 10_000 })
    t.match(await error.textContent(), /wrong username or password/i)
    t.equal(await page.locator('[data-peer-id]').count(), 0, 'nothing of the mesh is shown')
    await snap(page, 'login-refused')
    await page.context().close()
  })

  t.test('an admin logs in: the mesh view lists every member, within the first-load budget', async (t) => {
    admin = watch(await newPage(browser))
    const sizes: Array<Promise<number>> = []
    const count = (r: import('playwright-core').Request): void => { sizes.push(r.sizes().then((s) => s.responseHeadersSize + s.responseBodySize, () => 0)) }
    admin.on('requestfinished', count)
    await logIn(admin, mesh.url, ADMIN.username, ADMIN.password)
    for (const a of mesh.agents) await admin.locator(`[data-peer-id="${a.peerId}"][data-state="alive"]`).waitFor({ timeout: 20_000 })
    await admin.waitForLoadState('networkidle')
    admin.off('requestfinished', count)
    const bytes = (await Promise.all(sizes)).reduce((a, b) => a + b, 0)
    t.comment(`first load: ${bytes} bytes in ${sizes.length} requests`)
    t.ok(bytes < FIRST_LOAD_LIMIT, `first load ${bytes} bytes < ${FIRST_LOAD_LIMIT}`)
    t.equal(await admin.locator('tr[data-peer-id]').count(), mesh.agents.length, 'one row per member')
    t.equal(await admin.locator('tr[data-peer-id].is-coordinator').count(), 1, 'the coordinator is marked')
    t.equal(await admin.locator('.mesh-graph [data-node]').count(), mesh.agents.length, 'the picture has every member')
    for (const view of ['mesh', 'cameras', 'events', 'sensors', 'decisions', 'operators']) {
      t.equal(await admin.locator(`a[data-view="${view}"]`).count(), 1, `a link to ${view}`)
    }
    await snap(admin, 'mesh')
  })

  t.test('camera tiles show the latest frame with the parcel boxed, on this box and on another', async (t) => {
    await camerasRunning(mesh.agents[0] as AgentProcess, ['porch'])
    await camerasRunning(mesh.agents[1] as AgentProcess, ['driveway'])
    await admin.locator('[data-view="cameras"]').click()
    for (const [camera, node] of [['porch', 'alpha'], ['driveway', 'beta']] as const) {
      const tile = admin.locator(`[data-camera="${camera}"]`)
      const img = tile.locator('img')
      await img.waitFor({ timeout: 20_000 })
      // The frame as the browser decoded it: red on the box's edges, not inside.
      const seen = await img.evaluate(async (el: any) => {
        await el.decode()
        const canvas = (globalThis as any).document.createElement('canvas')
        canvas.width = el.naturalWidth
        canvas.height = el.naturalHeight
        const g = canvas.getContext('2d')
        g.drawImage(el, 0, 0)
        const red = (x: number, y: number): boolean => { const [r, gr, b] = g.getImageData(x, y, 1, 1).data; return r > 180 && gr < 90 && b < 90 }
        return { width: canvas.width, height: canvas.height, left: red(100, 85), top: red(140, 60), inside: red(140, 85) }
      })
      t.same(seen, { width: 320, height: 240, left: true, top: true, inside: false }, `${camera}: the frame with the parcel's box`)
      t.match(await tile.textContent(), new RegExp(`on ${node}`), `${camera}: the tile names the member that runs it`)
      // Its figures, from the member that runs it: fps in is a number.
      await tile.locator('dd').first().filter({ hasText: /^\d/ }).waitFor({ timeout: 15_000 })
    }
    await admin.waitForTimeout(2_500) // a refresh
    await snap(admin, 'cameras')
    await admin.locator('[data-camera="driveway"] h3 a').click()
    await admin.locator('.camera-view').waitFor()
    await admin.locator('.camera-view img').first().waitFor({ timeout: 10_000 })
    await snap(admin, 'camera')
  })

  t.test('a sensor whose topic is markup shows as text', async (t) => {
    const host = mesh.agents[0] as AgentProcess
    const topic = `sensors/${HOSTILE}`
    execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mesh.mqttPort), '-q', '1', '-t', topic, '-m', '7'])
    await waitFor('the reading to be stored', async () => (await apiGet<SensorReadingView[]>(host.socketPath, '/api/v1/sensors')).some((s) => s.sensor === topic), 15_000)
    await admin.locator('[data-view="sensors"]').click()
    const row = admin.locator('tr[data-sensor]').filter({ hasText: HOSTILE })
    await row.waitFor({ timeout: 10_000 })
    t.equal(await row.locator('.sensor-name').textContent(), topic, 'the topic as written')
    t.equal(await admin.locator('img[src="x"]').count(), 0, 'no element made of it')
    await row.locator('button').click()
    await admin.locator('.series').waitFor()
    t.equal(await admin.locator('.series .sensor-name').textContent(), topic)
    await admin.waitForTimeout(1_000)
    await snap(admin, 'sensors')
  })

  t.test('the other views open', async (t) => {
    for (const view of ['events', 'decisions', 'operators']) {
      await admin.locator(`[data-view="${view}"]`).click()
      await admin.locator(`.${view}-view`).waitFor()
      await admin.waitForTimeout(700)
      await snap(admin, view)
      if (view === 'decisions') t.equal(await admin.locator('[data-action="optimize"]').count(), 1, 'an admin may ask for a placement')
    }
    await admin.locator('[data-user="watcher"]').waitFor({ timeout: 10_000 })
    const beta = mesh.agents[1] as AgentProcess
    await admin.goto(`${mesh.url}#/member/${encodeURIComponent(beta.peerId)}`)
    await admin.locator(`.member-view[data-peer-id="${beta.peerId}"]`).waitFor({ timeout: 10_000 })
    await admin.waitForTimeout(1_500)
    await snap(admin, 'member')
    await admin.locator('[data-view="mesh"]').first().click()
    t.pass('events, decisions, operators and a member shown')
  })

  t.test('a viewer, on a phone: no optimize button, no operators, nothing wider than the screen; signing out', async (t) => {
    const page = watch(await newPage(browser, { width: 390, height: 844 }))
    await logIn(page, mesh.url, VIEWER.username, VIEWER.password)
    const overflow = (): Promise<number> => page.evaluate(() => { const d = (globalThis as any).document.documentElement; return d.scrollWidth - d.clientWidth })
    await snap(page, 'phone-mesh')
    t.equal(await overflow(), 0, 'the mesh view fits the width')
    await page.locator('[data-view="cameras"]').click()
    await page.locator('[data-camera] img').first().waitFor({ timeout: 20_000 })
    t.equal(await overflow(), 0, 'the cameras fit the width')
    await snap(page, 'phone-cameras')
    await page.locator('[data-view="decisions"]').click()
    await page.locator('.decisions-view').waitFor()
    t.equal(await page.locator('[data-action="optimize"]').count(), 0, 'no optimize button')
    t.equal(await page.locator('a[data-view="operators"]').count(), 0, 'no link to the accounts')
    await snap(page, 'phone-decisions-viewer')
    await page.locator('[data-action="logout"]').click()
    await page.locator('input[name="username"]').waitFor({ timeout: 10_000 })
    await page.reload()
    await page.locator('input[name="username"]').waitFor({ timeout: 10_000 })
    t.equal(await page.locator('[data-peer-id]').count(), 0, 'signed out: the session is gone, a reload asks again')
    await page.context().close()
  })

  t.test('a member killed turns dead on the page, without a reload', async (t) => {
    const gamma = mesh.agents[2] as AgentProcess
    await admin.locator(`tr[data-peer-id="${gamma.peerId}"][data-state="alive"]`).waitFor({ timeout: 10_000 })
    await admin.evaluate(() => { (globalThis as any).notReloaded = true })
    gamma.child.kill('SIGKILL')
    await gamma.exited
    await admin.locator(`tr[data-peer-id="${gamma.peerId}"][data-state="dead"]`).waitFor({ timeout: 20_000 })
    t.equal(await admin.evaluate(() => (globalThis as any).notReloaded), true, 'the same page, updated live')
    t.equal(await admin.locator(`.mesh-graph [data-node="${gamma.peerId}"].state-dead`).count(), 1, 'the picture too')
    await admin.waitForTimeout(600) // the dot's colour fades
    await snap(admin, 'mesh-dead')
    t.same(trouble, [], 'no CSP violation, script error or dialog on any page')
  })
}
