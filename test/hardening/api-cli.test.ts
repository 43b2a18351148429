import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { BIN, tempDir } from '../helpers/agents.ts'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** A fake agent on `<dataDir>/agent.sock` that answers every request with `handler`. */
async function fakeAgent (t: Parameters<typeof tempDir>[0], handler: Handler): Promise<string> {
  const dataDir = join(tempDir(t), 'data')
  mkdirSync(dataDir)
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(join(dataDir, 'agent.sock'), resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return dataDir
}

/** Runs the CLI: its exit code, what it printed, and how long it took. */
function noodle (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string, ms: number }> {
  const started = Date.now()
  const cli = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  cli.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  cli.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  return new Promise((resolve) => cli.once('close', (code) => { resolve({ code, stdout, stderr, ms: Date.now() - started }) }))
}

const json = (status: number, text: string): Handler => (_req, res) => {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

t.test('an agent that trickles its answer: the CLI gives up at the deadline, not when the agent stops', async (t) => {
  const dataDir = await fakeAgent(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{')
    const drip = setInterval(() => { res.write(' ') }, 300) // never idle for long, never done
    res.once('close', () => { clearInterval(drip) })
  })
  const run = await noodle(['status', '--data-dir', dataDir])
  t.same({ code: run.code, stdout: run.stdout, stderr: run.stderr }, { code: 1, stdout: '', stderr: 'noodle: the agent did not answer GET /api/v1/system/status within 5 s\n' })
  // The drip never ends: any bound shows it was cut off (the CLI's own start counts too, slow on a busy box).
  t.ok(run.ms < 15_000, `after ${run.ms} ms`)
})

t.test('an answer over 64 MiB is not read past the cap', async (t) => {
  const dataDir = await fakeAgent(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    const chunk = Buffer.alloc(1024 * 1024, 0x20)
    let sent = 0
    const more = (): void => {
      while (sent < 80 && res.write(chunk)) sent++
      if (sent < 80) res.once('drain', () => { sent++; more() })
      else res.end()
    }
    res.write('[')
    more()
  })
  t.same(await noodle(['nodes', '--data-dir', dataDir]).then(({ code, stdout, stderr }) => ({ code, stdout, stderr })),
    { code: 1, stdout: '', stderr: `noodle: agent answered /api/v1/mesh/nodes with more than ${64 * 1024 * 1024} bytes\n` })
})

t.test('error answers and successes of the wrong shape are a one-line error, never a stack trace', async (t) => {
  const cases: Array<[string, Handler, string[], string]> = [
    ['a 400 whose body is null', json(400, 'null'), ['status'], 'noodle: HTTP 400\n'],
    ['a 400 whose message is an object', json(400, '{"error":{"code":"ERR_X","message":{"text":"hi"}}}'), ['status'], 'noodle: HTTP 400\n'],
    ['a 500 whose error is a string', json(500, '{"error":"boom"}'), ['status'], 'noodle: HTTP 500\n'],
    ['a 400 of the usual shape', json(400, '{"error":{"code":"ERR_BAD_REQUEST","message":"name: \\u001b[31mred"}}'), ['status'], 'noodle: name: \\x1b[31mred\n'],
    ['a 200 of null', json(200, 'null'), ['status'], ''],
    ['a 200 of a number', json(200, '42'), ['nodes'], ''],
    ['a 200 of the wrong object', json(200, '{"nodes":1}'), ['nodes'], ''],
    ['a 200 of the wrong list', json(200, '[1,2]'), ['sensors'], ''],
    ['not JSON', json(200, '<html>'), ['status'], 'noodle: agent answered /api/v1/system/status with something other than JSON\n']
  ]
  for (const [what, handler, args, stderr] of cases) {
    const dataDir = await fakeAgent(t, handler)
    const run = await noodle([...args, '--data-dir', dataDir])
    if (stderr === '') {
      t.match({ code: run.code, stderr: run.stderr }, { code: 1, stderr: /^noodle: the agent's answer is not of the shape this noodle reads \([^\n]*\)\n$/ }, what)
    } else {
      t.same({ code: run.code, stdout: run.stdout, stderr: run.stderr }, { code: 1, stdout: '', stderr }, what)
    }
  }
})

t.test('--json and metrics are escaped for the terminal: the same JSON, nothing a terminal acts on', async (t) => {
  const evil = { name: 'box\u202e\u009b31m', peerId: 'x\u2028y' }
  const jsonDir = await fakeAgent(t, json(200, JSON.stringify(evil)))
  const run = await noodle(['status', '--json', '--data-dir', jsonDir])
  t.same({ code: run.code, stdout: run.stdout }, { code: 0, stdout: '{\n  "name": "box\\u202e\\u009b31m",\n  "peerId": "x\\u2028y"\n}\n' }, 'escaped as \\u')
  t.same(JSON.parse(run.stdout), evil, 'and still the same JSON')

  const metricsDir = await fakeAgent(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
    res.end('# HELP x a \u001b]0;owned\u0007 help\nx{l="\u009b2J"} 1\n')
  })
  const metrics = await noodle(['metrics', '--data-dir', metricsDir])
  t.same({ code: metrics.code, stdout: metrics.stdout }, { code: 0, stdout: '# HELP x a \\x1b]0;owned\\x07 help\nx{l="\\x9b2J"} 1\n' }, 'noodle metrics: line by line')
})
