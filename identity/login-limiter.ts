import { NoodleError } from '../agent/errors.ts'
import { BoundedMap } from '../protocols/bounded-map.ts'

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
 *
 * A check under way counts against its account until it ends, so concurrent guesses cannot slip past the limit,
 * and each failure is added to the account's list as it is then (not to a copy taken before the check), so
 * concurrent failures all count. The accounts remembered are capped (unknown names cost a guesser nothing): past
 * the cap, the account whose last failure is oldest is forgotten first. Flushing a real account out that way takes
 * 50 000 failed checks, minutes of the two scrypt slots, so it buys a guesser little.
 */
export class LoginLimiter {
  static readonly MAX_FAILURES = 5
  static readonly WINDOW_MS = 15 * 60_000
  static readonly MAX_CONCURRENT = 2
  static readonly MAX_ACCOUNTS = 50_000
  /**
   * Failure times by account, least recently failed first (an account is moved to the end when it fails), capped:
   * past the cap the least recently failed is forgotten.
   */
  private readonly failures: BoundedMap<string, number[]>
  /** Checks under way, by account. */
  private readonly pending = new Map<string, number>()
  private readonly now: () => number
  private inFlight = 0

  constructor (components: { now?: () => number, maxAccounts?: number } = {}) {
    this.now = components.now ?? Date.now
    this.failures = new BoundedMap(components.maxAccounts ?? LoginLimiter.MAX_ACCOUNTS)
  }

  /** How many accounts have failures remembered (for tests and the curious). */
  get size (): number {
    return this.failures.size
  }

  /** Runs one password check for `account`, if the limits allow it now; `check` says whether it passed. */
  async attempt<T> (account: string, check: () => Promise<{ ok: boolean, value: T }>): Promise<{ ok: boolean, value: T }> {
    const recent = this.recentFailures(account)
    const pending = this.pending.get(account) ?? 0
    if (recent.length + pending >= LoginLimiter.MAX_FAILURES) {
      const retryAfterS = Math.ceil(((recent[0] ?? this.now()) + LoginLimiter.WINDOW_MS - this.now()) / 1000)
      throw new TooManyAttemptsError(`too many failed logins for ${account}: try again in ${retryAfterS} s`, retryAfterS)
    }
    if (this.inFlight >= LoginLimiter.MAX_CONCURRENT) throw new TooManyAttemptsError('too many logins at once: try again in a second', 1)
    this.inFlight++
    this.pending.set(account, pending + 1)
    let result: { ok: boolean, value: T } | undefined
    try {
      result = await check()
      return result
    } finally {
      this.inFlight--
      const left = (this.pending.get(account) ?? 1) - 1
      if (left === 0) this.pending.delete(account)
      else this.pending.set(account, left)
      // A check that threw counts as a failure: it must not be a way to guess for free.
      if (result?.ok === true) this.failures.delete(account)
      else this.recordFailure(account)
    }
  }

  /** The account's failures still inside the window (and the list trimmed to them). */
  private recentFailures (account: string): number[] {
    const list = this.failures.get(account)
    if (list === undefined) return []
    const since = this.now() - LoginLimiter.WINDOW_MS
    const recent = list.filter((at) => at > since)
    if (recent.length === 0) this.failures.delete(account)
    else if (recent.length !== list.length) this.failures.set(account, recent)
    return recent
  }

  private recordFailure (account: string): void {
    const recent = this.recentFailures(account)
    this.failures.delete(account) // re-inserted last: the map stays ordered by latest failure
    this.failures.set(account, [...recent, this.now()].slice(-LoginLimiter.MAX_FAILURES))
  }
}
