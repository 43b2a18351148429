import type { Component } from '../../common/component.ts'
import type { Logger } from '../../common/logger.ts'

export type { Component }

/** Starts components in order and stops the started ones in reverse, also when a start fails half-way. */
export class Lifecycle {
  private readonly components: ReadonlyArray<readonly [string, Component]>
  private readonly log: Logger
  private started: Array<readonly [string, Component]> = []

  constructor (components: ReadonlyArray<readonly [string, Component]>, log: Logger) {
    this.components = components
    this.log = log
  }

  /** The components' names, in start order. */
  get names (): string[] {
    return this.components.map(([name]) => name)
  }

  async start (): Promise<void> {
    for (const entry of this.components) {
      try {
        await entry[1].start?.()
      } catch (err) {
        this.log.error({ err, component: entry[0] }, 'component failed to start')
        await this.stop()
        throw err
      }
      this.started.push(entry)
    }
  }

  /** Stops every started component even if one of them fails to stop. */
  async stop (): Promise<void> {
    const started = this.started.reverse()
    this.started = []
    for (const [name, component] of started) {
      try {
        await component.stop?.()
      } catch (err) {
        this.log.error({ err, component: name }, 'component failed to stop')
      }
    }
  }
}
