import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { SystemdNotifier } from '../../../agent/main/systemd.ts'
import { commandExists, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'

const UNIT = fileURLToPath(new URL('../../../systemd/noodle-agent.service', import.meta.url))
const log = createLogger('silent')

/** A stand-in for systemd's notification socket: every datagram it gets, as a string. */
function notifySocket (path: string) {
  const receiver = spawn('python3', ['-u', '-c', [
    'import json, socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    `s.bind(${JSON.stringify(path)})`,
    'print("bound")',
    'while True: print(json.dumps(s.recv(4096).decode()))'
  ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] })
  const messages: string[] = []
  let bound = false
  let buffered = ''
  receiver.stdout.on('data', (d: Buffer) => {
    buffered += d.toString()
    const lines = buffered.split('\n')
    buffered = lines.pop() ?? ''
    for (const line of lines) {
      if (line === 'bound') bound = true
      else messages.push(JSON.parse(line) as string)
    }
  })
  return { messages, ready: () => waitFor('the socket', () => bound, 5_000), stop: () => { receiver.kill() } }
}

t.test('under systemd the agent says READY once up, WATCHDOG at half the interval with its status, STOPPING when it stops', async (t) => {
  const root = tempDir(t)
  const socket = notifySocket(join(root, 'notify'))
  t.teardown(socket.stop)
  await socket.ready()
  const agent = await startAgent({ root, name: 'svc', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), env: { NOTIFY_SOCKET: join(root, 'notify'), WATCHDOG_USEC: '400000' } })
  t.teardown(() => stopAgents([agent]))
  const ready = await waitFor('READY=1', () => socket.messages.find((m) => m.startsWith('READY=1')), 10_000)
  t.match(ready, new RegExp(`^READY=1\\nMAINPID=${agent.child.pid ?? 0}\\nSTATUS=1 member\\(s\\) alive; `), 'with the main PID and a status line')
  const pings = () => socket.messages.filter((m) => m.startsWith('WATCHDOG=1\nSTATUS=')).length
  t.equal(await eventually(() => Math.min(pings(), 3), 3, { timeoutMs: 5_000 }), 3, 'WATCHDOG=1 every 200 ms (WatchdogSec 400 ms): three pings at least')
  agent.child.kill('SIGTERM')
  await agent.exited
  await waitFor('STOPPING=1', () => socket.messages.includes('STOPPING=1'), 5_000)
  t.equal(socket.messages.indexOf('STOPPING=1'), socket.messages.length - 1, 'the last thing it says')
})

t.test('a status carrying names from the wire cannot add a line (a command) to a notification', async (t) => {
  const root = tempDir(t)
  const socket = notifySocket(join(root, 'notify'))
  t.teardown(socket.stop)
  await socket.ready()
  const notifier = new SystemdNotifier({ env: { NOTIFY_SOCKET: join(root, 'notify'), WATCHDOG_USEC: '200000' }, log, status: () => 'coordinator evil\nWATCHDOG_USEC=1\u001b[2J\nSTOPPING=1' })
  notifier.start()
  const watchdog = await waitFor('a watchdog ping', () => socket.messages.find((m) => m.startsWith('WATCHDOG=1')), 5_000)
  await notifier.stop()
  t.equal(watchdog, 'WATCHDOG=1\nSTATUS=coordinator evil\\nWATCHDOG_USEC=1\\x1b[2J\\nSTOPPING=1', 'two lines: the ping and one status')
  t.match(socket.messages[0], /^READY=1\nMAINPID=\d+\nSTATUS=coordinator evil\\nWATCHDOG_USEC=1/)
})

t.test('outside systemd it says nothing; a watchdog meant for another process is not ours', async (t) => {
  const quiet = new SystemdNotifier({ env: {}, log, status: () => 'x' })
  quiet.start()
  await quiet.stop()
  t.equal(quiet.watchdogMs, undefined)
  t.equal(new SystemdNotifier({ env: { WATCHDOG_USEC: '30000000' }, log, status: () => 'x' }).watchdogMs, 30_000)
  t.equal(new SystemdNotifier({ env: { WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, log, status: () => 'x' }).watchdogMs, undefined)
  const warnings: string[] = []
  const missing = new SystemdNotifier({ env: { NOTIFY_SOCKET: '/nonexistent' }, log: { ...log, warn: (_: unknown, msg: string) => { warnings.push(msg) }, info: () => {} } as never, status: () => 'x', python: '/no/python3' })
  missing.start()
  await missing.stop()
  t.match(warnings, [/is python3 installed/], 'no python3: said in the log, and the agent goes on')
})

t.test('the unit file passes systemd-analyze verify', async (t) => {
  if (!commandExists('systemd-analyze')) {
    t.comment('skipped: systemd-analyze is not installed')
    return
  }
  // verify checks that ExecStart's program exists: point it at a stand-in.
  const dir = t.testdir()
  const program = join(dir, 'noodle')
  writeFileSync(program, '#!/bin/sh\n')
  chmodSync(program, 0o755)
  const unit = join(dir, 'noodle-agent.service')
  writeFileSync(unit, readFileSync(UNIT, 'utf8').replace('/opt/noodle/bin/noodle', program))
  const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' })
  t.equal(verify.status, 0)
  t.equal(verify.stdout + verify.stderr, '', 'no complaints, not even a warning')
  const text = readFileSync(UNIT, 'utf8')
  for (const line of ['Type=notify', 'WatchdogSec=30s', 'Restart=on-failure', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'CapabilityBoundingSet=', 'StateDirectory=noodle', 'RuntimeDirectory=noodle', 'DeviceAllow=char-video4linux rw']) {
    t.match(text, new RegExp(`\\n${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`), line)
  }
  // Every setting has its reason in a comment just above it (or above its group).
  const lines = text.split('\n')
  const unexplained = lines.filter((l, i) => /^[A-Z]\w+=/.test(l) && !lines.slice(Math.max(0, i - 8), i).some((p) => p.startsWith('#')))
  t.same(unexplained, [], 'no setting without a comment near it')
})
