import net from 'node:net'
import { Aedes } from 'aedes'
import type { Logger } from './logger.ts'

/**
 * An MQTT broker inside the agent (aedes, MQTT 3.1.1), for a box whose sensors have no broker to publish to.
 * It keeps sessions and queued messages in memory: a restart of the agent loses what the broker held for
 * subscribers, so a box with a real broker (Mosquitto) should use that.
 */
export class EmbeddedBroker {
  private readonly host: string
  private readonly port: number
  private readonly log: Logger
  private broker: Aedes | undefined
  private server: net.Server | undefined
  private readonly sockets = new Set<net.Socket>()

  constructor (components: { host: string, port: number, log: Logger }) {
    this.host = components.host
    this.port = components.port
    this.log = components.log
  }

  /** Where the agent itself reaches the broker: loopback when it listens on every address. */
  get url (): string {
    const host = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : this.host
    return `mqtt://${net.isIPv6(host) ? `[${host}]` : host}:${this.port}`
  }

  async start (): Promise<void> {
    const broker = await Aedes.createBroker()
    const server = net.createServer((socket) => {
      this.sockets.add(socket)
      socket.once('close', () => { this.sockets.delete(socket) })
      broker.handle(socket)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, this.host, () => { server.off('error', reject); resolve() })
    })
    this.broker = broker
    this.server = server
    this.log.info({ host: this.host, port: this.port }, 'embedded MQTT broker listening')
  }

  async stop (): Promise<void> {
    const { server, broker } = this
    this.server = undefined
    this.broker = undefined
    if (server !== undefined) {
      const closed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      for (const socket of this.sockets) socket.destroy()
      await closed
    }
    if (broker !== undefined) await new Promise<void>((resolve) => { broker.close(() => { resolve() }) })
  }
}
