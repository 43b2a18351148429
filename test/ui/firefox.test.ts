/**
 * The dashboard in Firefox (Debian's firefox-esr, headless, driven by puppeteer-core over WebDriver BiDi) against
 * a real mesh of two agents: alpha serves the page over HTTPS (its self-signed certificate accepted) and runs a
 * camera with the test detector; beta is killed at the end. Issue 16 asks for current Chromium and Firefox;
 * test/ui/dashboard.test.ts covers Chromium at length, this file what could differ in Firefox: the login form, the
 * mesh view, the live WebSocket, the camera frame decoded from a blob: URL, the Content-Security-Policy, and no
 * console error. Every page visited is saved as a PNG in a temporary folder (NOODLE_UI_SHOTS names another),
 * kept after the run and printed.
 */
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import puppeteer from 'puppeteer-core'
import type { Browser, Page } from 'puppeteer-core'
import { startAgent, tempDir } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'
import { addOperator, camerasRunning, parcelCamera, startDashboardMesh } from '../../scripts/screenshots.ts'
import type { DashboardMesh } from '../../scripts/screenshots.ts'

/** The browser: Debian's firefox-esr unless NOODLE_FIREFOX names another. */
const FIREFOX = process.env.NOODLE_FIREFOX ?? '/usr/bin/firefox-esr'
const ADMIN = { username: 'admin', password: 'a long and quiet river' }

if (!existsSync(FIREFOX)) {
  t.comment(`skipped: no browser at ${FIREFOX} (apt-get install firefox-esr, or set NOODLE_FIREFOX)`)
  t.pass('skipped')
} else {
  const shots = process.env.NOODLE_UI_SHOTS ?? mkdtempSync(join(tmpdir(), 'noodle-ui-firefox-'))
  mkdirSync(shots, { recursive: true })
  t.comment(`screenshots in ${shots}`)

  const root = tempDir(t)
  const model = join(root, 'parcels.onnx')
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320 })
  let mesh: DashboardMesh
  let browser: Browser
  let page: Page
  /** What the page did that it should not: console errors, CSP violations, script errors, dialogs. */
  const trouble: string[] = []
  /** Console warnings: reported, not failed on. */
  const warnings: string[] = []
  /** The API paths the page fetched, in order. */
  const fetched: string[] = []
  let shot = 0
  const snap = async (name: string): Promise<void> => {
    shot += 1
    await page.screenshot({ path: join(shots, `firefox-${String(shot).padStart(2, '0')}-${name}.png`) as `${string}.png`, fullPage: true })
  }
  const visible = (selector: string, timeout = 15_000): Promise<unknown> => page.waitForSelector(selector, { visible: true, timeout })
  const count = (selector: string): Promise<number> => page.$$eval(selector, (els) => els.length)

  t.before(async () => {
    const [m, b] = await Promise.all([
      startDashboardMesh({ root, names: ['alpha', 'beta'], work: { alpha: [parcelCamera('porch', model)] }, start: startAgent }),
      puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true, acceptInsecureCerts: true, defaultViewport: { width: 1280, height: 800 } })
    ])
    mesh = m
    browser = b
    await addOperator(mesh.agents[0] as AgentProcess, ADMIN.username, ADMIN.password, 'admin')
    page = await browser.newPage()
    // A CSP violation reaches the page as an event, not always as a console message over BiDi: say it there.
    await page.evaluateOnNewDocument(() => {
      (globalThis as any).document.addEventListener('securitypolicyviolation', (e: any) => {
        (globalThis as any).console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`)
      })
    })
    page.on('console', (m) => {
      if (m.type() === 'error') trouble.push(`console: ${m.text()}`)
      else if (m.type() === 'warn') warnings.push(m.text())
    })
    page.on('pageerror', (e) => { trouble.push(`page error: ${e instanceof Error ? e.message : String(e)}`) })
    page.on('dialog', (d) => { trouble.push(`dialog: ${d.message()}`); d.dismiss().catch(() => {}) })
    page.on('request', (r) => { const u = new URL(r.url()); if (u.pathname.startsWith('/api/')) fetched.push(u.pathname) })
  })
  t.teardown(async () => {
    if (warnings.length > 0) t.comment(`console warnings:\n${warnings.join('\n')}`)
    await browser?.close()
    await mesh?.stop()
  })

  t.test('a wrong password is refused, the error shown', async (t) => {
    await page.goto(mesh.url)
    await page.locator('input[name="username"]').fill(ADMIN.username)
    await page.locator('input[name="password"]').fill('not the password')
    await page.locator('form button[type="submit"]').click()
    await visible('[data-error]', 10_000)
    t.equal(await page.$eval('[data-error]', (el) => el.textContent), 'Wrong username or password.')
    t.equal(await count('[data-peer-id]'), 0, 'nothing of the mesh is shown')
    await snap('login-refused')
  })

  t.test('the admin logs in: the mesh view lists every member alive, the live feed open', async (t) => {
    await page.locator('input[name="password"]').fill(ADMIN.password)
    await page.locator('form button[type="submit"]').click()
    for (const a of mesh.agents) await visible(`tr[data-peer-id="${a.peerId}"][data-state="alive"]`, 20_000)
    await visible('[data-live="open"]', 10_000)
    const rows = await page.$$eval('tr[data-peer-id]', (els) => els.map((el) => [el.getAttribute('data-peer-id'), el.getAttribute('data-state')]).sort())
    t.same(rows, mesh.agents.map((a) => [a.peerId, 'alive']).sort(), 'one row per member, every one alive')
    t.equal(await count('.mesh-graph [data-node]'), mesh.agents.length, 'the picture has every member')
    t.same(fetched.filter((p) => p === '/api/v1/mesh/nodes'), ['/api/v1/mesh/nodes'], 'the members asked for once, at login, the rest from the live feed')
    await snap('mesh')
  })

  t.test('the camera tile shows a frame Firefox decoded, the parcel boxed', async (t) => {
    await camerasRunning(mesh.agents[0] as AgentProcess, ['porch'])
    await page.locator('a[data-view="cameras"]').click()
    await visible('[data-camera="porch"] img', 20_000)
    const seen = await page.$eval('[data-camera="porch"] img', async (el: any) => {
      await el.decode()
      const canvas = (globalThis as any).document.createElement('canvas')
      canvas.width = el.naturalWidth
      canvas.height = el.naturalHeight
      const g = canvas.getContext('2d')
      g.drawImage(el, 0, 0)
      const red = (x: number, y: number): boolean => { const [r, gr, b] = g.getImageData(x, y, 1, 1).data; return r > 180 && gr < 90 && b < 90 }
      return { scheme: new URL(el.src).protocol, width: el.naturalWidth, height: el.naturalHeight, left: red(100, 85), top: red(140, 60), inside: red(140, 85) }
    })
    t.same(seen, { scheme: 'blob:', width: 320, height: 240, left: true, top: true, inside: false }, 'the frame, from a blob: URL, with the parcel\'s box')
    await snap('cameras')
  })

  t.test('a member killed turns dead on the page, without a reload, through the live feed', async (t) => {
    await page.locator('a[data-view="mesh"]').click()
    const beta = mesh.agents[1] as AgentProcess
    await visible(`tr[data-peer-id="${beta.peerId}"][data-state="alive"]`, 10_000)
    await page.evaluate(() => { (globalThis as any).notReloaded = true })
    const before = fetched.length
    beta.child.kill('SIGKILL')
    await beta.exited
    await visible(`tr[data-peer-id="${beta.peerId}"][data-state="dead"]`, 20_000)
    t.equal(await page.evaluate(() => (globalThis as any).notReloaded), true, 'the same page, updated live')
    t.same(fetched.slice(before).filter((p) => p === '/api/v1/mesh/nodes'), [], 'the members were not asked for again: the live feed told')
    t.equal(await page.$eval('[data-live]', (el) => el.getAttribute('data-live')), 'open', 'the live feed still open')
    t.equal(await count(`.mesh-graph [data-node="${beta.peerId}"].state-dead`), 1, 'the picture too')
    await new Promise((resolve) => setTimeout(resolve, 600)) // the dot's colour fades
    await snap('mesh-dead')
  })

  t.test('no console error, CSP violation, script error or dialog on any page', async (t) => {
    t.same(trouble, [])
    // The watch itself: an inline script, which the page's CSP forbids, is seen, by the page's listener and by
    // Firefox, which reports it as a page error.
    await page.evaluate(() => {
      const s = (globalThis as any).document.createElement('script')
      s.textContent = 'void 0'
      ;(globalThis as any).document.head.append(s)
    })
    const deadline = Date.now() + 5_000
    while (trouble.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
    const heads = trouble.map((s) => /^(console: CSP violation: script-src-elem|page error: Content-Security-Policy)/.exec(s)?.[0] ?? s).sort()
    t.same(heads, ['console: CSP violation: script-src-elem', 'page error: Content-Security-Policy'], 'a violation would have been seen')
  })
}
