import { NoodleError } from '../agent/errors.ts'

/** Too many failed logins for an account lately, or too many logins at once: 429, with when to try again. */
export class TooManyAttemptsError extends NoodleError {
  readonly httpStatus = 429
  readonly retryAfterS: number

  constructor (message: string, retryAfterS: number) {
    super('ERR_TOO_MANY_ATTEMPTS', message)
    this.retryAfterS = retryAfterS
  }
}

/**
 * Rate limits on login, the one endpoint that answers strangers. Per account: 5 failures in 15 minutes lock it
 * until the oldest of them is 15 minutes old (what an online guesser gets: 20 guesses an hour). For the box:
 * at most 2 password checks at a time, since each is 64 MiB and tens of ms of scrypt. Kept in memory: a
 * restart forgets the failures, which costs a guesser a restart of somebody else's box.
 */
export class LoginLimiter {
  static readonly MAX_FAILURES = 5
  static readonly WINDOW_MS = 15 * 60_000
  static readonly MAX_CONCURRENT = 2
  private readonly failures = new Map<string, number[]>()
  private readonly now: () => number
  private inFlight = 0

  constructor (components: { now?: () => number } = {}) {
    this.now = components.now ?? Date.now
  }

  /** Runs one password check for `account`, if the limits allow it now; `check` says whether it passed. */
  async attempt<T> (account: string, check: () => Promise<{ ok: boolean, value: T }>): Promise<{ ok: boolean, value: T }> {
    const now = this.now()
    const recent = (this.failures.get(account) ?? []).filter((at) => at > now - LoginLimiter.WINDOW_MS)
    if (recent.length >= LoginLimiter.MAX_FAILURES) {
      const retryAfterS = Math.ceil(((recent[0] as number) + LoginLimiter.WINDOW_MS - now) / 1000)
      throw new TooManyAttemptsError(`too many failed logins for ${account}: try again in ${retryAfterS} s`, retryAfterS)
    }
    if (this.inFlight >= LoginLimiter.MAX_CONCURRENT) throw new TooManyAttemptsError('too many logins at once: try again in a second', 1)
    this.inFlight++
    try {
      const result = await check()
      if (result.ok) this.failures.delete(account)
      else this.failures.set(account, [...recent, this.now()])
      return result
    } finally {
      this.inFlight--
    }
  }
}
