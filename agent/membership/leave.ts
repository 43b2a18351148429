import { systemEventCodec } from '../../protocols/events.ts'
import type { Logger } from '../../common/logger.ts'
import type { Mesh } from '../mesh/mesh.ts'

/** How long a stopping agent waits after announcing its leave, so the message gets out before the mesh closes. */
export const LEAVE_GRACE_MS = 150

export interface LeaveAnnouncementComponents {
  mesh: Pick<Mesh, 'publish'>
  log: Logger
  /** This run's start: others tell a leave of this run from one of an earlier run. */
  startedAt: number
}

/**
 * Tells the mesh this agent is leaving (others list it `left`, not `dead`). A component of its own so that the
 * lifecycle sends it once placement and the election have stopped, and while the mesh still runs: a departing
 * coordinator places nothing after it said goodbye.
 */
export class LeaveAnnouncement {
  private readonly mesh: LeaveAnnouncementComponents['mesh']
  private readonly log: Logger
  private readonly startedAt: number

  constructor (components: LeaveAnnouncementComponents) {
    this.mesh = components.mesh
    this.log = components.log
    this.startedAt = components.startedAt
  }

  async start (): Promise<void> {}

  async stop (): Promise<void> {
    try {
      await this.mesh.publish(systemEventCodec, { v: 1, type: 'member.leave', at: Date.now(), startedAt: this.startedAt })
      await new Promise((resolve) => setTimeout(resolve, LEAVE_GRACE_MS))
    } catch (err) {
      this.log.warn({ err }, 'leave not announced')
    }
  }
}
