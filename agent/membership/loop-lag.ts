/**
 * How late this process's own timers run: the Lifeguard idea. When our event loop lags (the box is saturated,
 * or something blocked us), other members' beacons sit unread in our sockets and look like silence; a lagging
 * member therefore widens its own timeouts before it accuses anyone, and forgives a stall outright.
 */
export class LoopLag {
  /** Worst lateness seen lately (ms); decays by half in about a second once the loop is on time again. */
  private recentMs = 0
  private last: number | null = null
  private readonly now: () => number
  private readonly expectedMs: number

  constructor (components: { expectedMs: number, now?: () => number }) {
    this.expectedMs = components.expectedMs
    this.now = components.now ?? (() => performance.now())
  }

  /**
   * Call when a timer set `expectedMs` after the previous sample fires (by default the interval given at
   * construction); returns how long the loop stalled beyond it (ms, 0 when on time). The recent lag decays with
   * the time passed, however often it is sampled.
   */
  sample (expectedMs = this.expectedMs): number {
    const now = this.now()
    const late = this.last == null ? 0 : Math.max(0, now - this.last - expectedMs)
    const decay = this.last == null ? 1 : DECAY_PER_SAMPLE ** ((now - this.last) / this.expectedMs)
    this.last = now
    this.recentMs = Math.max(late, this.recentMs * decay)
    return late
  }

  /** The current lag, for status views. */
  get ms (): number {
    return Math.round(this.recentMs)
  }

  /**
   * How much to widen our timeouts: 1 while the lag is noise (under 100 ms, well inside a probe timeout),
   * then +1 per 100 ms of recent lag beyond that, at most 8 (as memberlist).
   */
  get scale (): number {
    return Math.min(MAX_SCALE, 1 + Math.max(0, this.recentMs - NOISE_MS) / 100)
  }
}

const NOISE_MS = 100
const DECAY_PER_SAMPLE = 0.97
const MAX_SCALE = 8
