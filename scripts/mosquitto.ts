import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'

/**
 * A real Mosquitto broker (Debian's package; `.ci/run` installs it) on a loopback port, owned by one test:
 * it can be stopped and started again on the same port and persistence file, or killed.
 */
export interface Broker {
  url: string
  port: number
  /** SIGTERM (Mosquitto saves its persistence file) and wait for the exit. */
  stop: () => Promise<void>
  /** Start again on the same port, with the same persistence file. */
  start: () => Promise<void>
  /** Stop and delete its files. */
  close: () => Promise<void>
  log: () => string
  /** The running broker's process id (undefined while stopped). */
  pid: () => number | undefined
}

export async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function waitForPort (port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => { resolve(false) })
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port} within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** `extra` lines go into mosquitto.conf as they are (e.g. "max_queued_messages 10"). */
export async function startMosquitto ({ extra = [] }: { extra?: string[] } = {}): Promise<Broker> {
  const dir = mkdtempSync(join(tmpdir(), 'noodle-mosquitto-'))
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    // Run as root, Mosquitto would switch to its own user, who cannot write this folder.
    `user ${userInfo().username}`,
    'persistence true',
    `persistence_location ${dir}/`,
    // An ingest box's settings (see docs/mqtt.md): queue generously for a subscriber that is behind or away.
    'max_queued_messages 1000000',
    'sys_interval 1',
    ...extra
  ].join('\n') + '\n')
  let child: ChildProcess | undefined
  let output = ''
  const start = async (): Promise<void> => {
    const c = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
    c.stdout?.on('data', (b: Buffer) => { output += b.toString() })
    c.stderr?.on('data', (b: Buffer) => { output += b.toString() })
    child = c
    await waitForPort(port, 5_000)
  }
  const stop = async (): Promise<void> => {
    const c = child
    child = undefined
    if (c === undefined || c.exitCode !== null) return
    const exited = new Promise((resolve) => c.once('exit', resolve))
    c.kill('SIGTERM')
    await exited
  }
  await start()
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    start,
    stop,
    close: async () => { await stop(); rmSync(dir, { recursive: true, force: true }) },
    log: () => output,
    pid: () => child?.pid
  }
}
