import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { escapeText } from '../../common/text.ts'
import type { Logger } from '../../common/logger.ts'

/**
 * Forwards one JSON string a line to $NOTIFY_SOCKET as one datagram. Node has no Unix datagram sockets (and the
 * npm wrappers of sd_notify are native addons to compile on every box), so a python3 process, started once and
 * alive as long as the agent, sends them. It must stay alive: systemd finds the unit of a notification by its
 * sender's process, and a sender that exited at once (`systemd-notify` per message) is sometimes not found.
 */
const BRIDGE = [
  'import json, os, socket, sys',
  'a = os.environ["NOTIFY_SOCKET"]',
  'a = "\\0" + a[1:] if a.startswith("@") else a',
  's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
  'for line in sys.stdin:',
  '    s.sendto(json.loads(line).encode(), a)'
].join('\n')

/**
 * The agent's side of systemd's `Type=notify`: READY=1 once every component has started, WATCHDOG=1 at half
 * the unit's `WatchdogSec` (from a timer on the event loop, so an agent whose loop is stuck is restarted),
 * STATUS= with it (what `systemctl status` shows), and STOPPING=1 when it stops. Outside systemd (no
 * $NOTIFY_SOCKET) it does nothing.
 */
export class SystemdNotifier {
  private readonly env: NodeJS.ProcessEnv
  private readonly log: Logger
  private readonly status: () => string
  private readonly python: string
  private bridge: ChildProcess | undefined
  private bridgeGone: Promise<void> = Promise.resolve()
  private watchdog: NodeJS.Timeout | undefined

  constructor (components: { env?: NodeJS.ProcessEnv, log: Logger, status: () => string, python?: string }) {
    this.env = components.env ?? process.env
    this.log = components.log
    this.status = components.status
    this.python = components.python ?? 'python3'
  }

  /** The watchdog interval systemd asks for (ms), if it asks this process. */
  get watchdogMs (): number | undefined {
    const usec = Number(this.env.WATCHDOG_USEC)
    const pid = this.env.WATCHDOG_PID
    if (!Number.isFinite(usec) || usec <= 0 || (pid !== undefined && pid !== String(process.pid))) return undefined
    return usec / 1000
  }

  start (): void {
    if (this.env.NOTIFY_SOCKET === undefined || this.env.NOTIFY_SOCKET === '') return
    const bridge = spawn(this.python, ['-c', BRIDGE], { stdio: ['pipe', 'ignore', 'pipe'], env: { NOTIFY_SOCKET: this.env.NOTIFY_SOCKET } })
    bridge.on('error', (err) => { this.log.warn({ err: err.message }, 'cannot notify systemd (is python3 installed?): it will time out waiting for READY') })
    bridge.stderr?.on('data', (d: Buffer) => { this.log.warn({ err: d.toString().trim() }, 'systemd notification failed') })
    bridge.stdin?.on('error', () => {}) // reported by 'error' above
    this.bridge = bridge
    this.bridgeGone = new Promise((resolve) => { bridge.once('exit', () => { resolve() }).once('error', () => { resolve() }) })
    this.send(`READY=1\nMAINPID=${process.pid}\nSTATUS=${this.statusText()}`)
    const interval = this.watchdogMs
    if (interval !== undefined) {
      this.watchdog = setInterval(() => { this.send(`WATCHDOG=1\nSTATUS=${this.statusText()}`) }, interval / 2)
    }
    this.log.info({ watchdogMs: interval ?? null }, 'told systemd the agent is ready')
  }

  async stop (): Promise<void> {
    clearInterval(this.watchdog)
    const bridge = this.bridge
    if (bridge === undefined) return
    this.bridge = undefined
    this.send('STOPPING=1', bridge)
    bridge.stdin?.end()
    await this.bridgeGone
  }

  /** The status on one line: it names members and work, and a newline in it would be a command to systemd. */
  private statusText (): string {
    return escapeText(this.status())
  }

  private send (message: string, bridge = this.bridge): void {
    bridge?.stdin?.write(JSON.stringify(message) + '\n')
  }
}
