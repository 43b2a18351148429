import { NoodleError } from '../common/errors.ts'
import { BoundedMap } from '../common/bounded-map.ts'

/** Too many failed logins for an account lately, or too many logins at once: 429, with when to try again. */
export class TooManyAttemptsError extends NoodleError {
  readonly httpStatus = 429
  readonly retryAfterS: number

  constructor (message: string, retryAfterS: number) {
    super('ERR_TOO_MANY_ATTEMPTS', message)
    this.retryAfterS = retryAfterS
  }
}

/** A login waiting for a password-check slot. */
interface Waiter { address: string, start: () => void }

/**
 * Rate limits on login, the one endpoint that answers strangers. Per account: 5 failures in 15 minutes lock it
 * until the oldest of them is 15 minutes old (what an online guesser gets: 20 guesses an hour). Failures count
 * per account, not per (address, account): a guesser with many addresses (any IPv6 prefix) would otherwise get
 * 20 guesses an hour from each. The price is that a stranger can keep an account locked over HTTPS; the local
 * socket (`noodle` on the box) never logs in, so it is never locked out.
 *
 * For the box: at most 2 password checks at a time, since each is 64 MiB and tens of ms of scrypt, and at most 1
 * per remote address, so one client cannot take both. A login that finds no slot waits its turn in a FIFO (at
 * most 2 s, at most 2 waiting per address and 64 in all) instead of being refused, so a client flooding logins
 * delays others by a check or two, not stops them. Kept in memory: a restart forgets the failures, which costs a
 * guesser a restart of somebody else's box.
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
  /** Logins from one address waiting for a slot, at most; more are refused at once. */
  static readonly MAX_WAITING_PER_ADDRESS = 2
  /** Logins waiting for a slot in all, at most. */
  static readonly MAX_WAITING = 64
  /** How long a login waits for a slot before it is refused. */
  static readonly MAX_WAIT_MS = 2_000
  /**
   * Failure times by account, least recently failed first (an account is moved to the end when it fails), capped:
   * past the cap the least recently failed is forgotten.
   */
  private readonly failures: BoundedMap<string, number[]>
  /** Checks under way, by account. */
  private readonly pending = new Map<string, number>()
  private readonly now: () => number
  private inFlight = 0
  /** Addresses with a check under way (at most one each). */
  private readonly checking = new Set<string>()
  /** Logins waiting for a slot, first come first served (among addresses without a check under way). */
  private readonly waiting: Waiter[] = []

  constructor (components: { now?: () => number, maxAccounts?: number } = {}) {
    this.now = components.now ?? Date.now
    this.failures = new BoundedMap(components.maxAccounts ?? LoginLimiter.MAX_ACCOUNTS)
  }

  /** How many accounts have failures remembered (for tests and the curious). */
  get size (): number {
    return this.failures.size
  }

  /**
   * Runs one password check for `account`, asked from `address`, once the limits allow it (waiting up to
   * MAX_WAIT_MS for a slot); `check` says whether it passed.
   */
  async attempt<T> (account: string, check: () => Promise<{ ok: boolean, value: T }>, address = 'local'): Promise<{ ok: boolean, value: T }> {
    const recent = this.recentFailures(account)
    const pending = this.pending.get(account) ?? 0
    if (recent.length + pending >= LoginLimiter.MAX_FAILURES) {
      const retryAfterS = Math.ceil(((recent[0] ?? this.now()) + LoginLimiter.WINDOW_MS - this.now()) / 1000)
      throw new TooManyAttemptsError(`too many failed logins for ${account}: try again in ${retryAfterS} s`, retryAfterS)
    }
    // Waiting, it counts against its account already: guesses queued together cannot pass the limit together.
    this.pending.set(account, pending + 1)
    let result: { ok: boolean, value: T } | undefined
    try {
      await this.slot(address)
    } catch (err) {
      this.unpend(account)
      throw err
    }
    try {
      result = await check()
      return result
    } finally {
      this.inFlight--
      this.checking.delete(address)
      this.unpend(account)
      this.next()
      // A check that threw counts as a failure: it must not be a way to guess for free.
      if (result?.ok === true) this.failures.delete(account)
      else this.recordFailure(account)
    }
  }

  /** Waits for a check slot for `address`: free now, or its turn in the FIFO within MAX_WAIT_MS; else 429. */
  private async slot (address: string): Promise<void> {
    const waitingHere = this.waiting.filter((w) => w.address === address).length
    if (waitingHere >= LoginLimiter.MAX_WAITING_PER_ADDRESS || this.waiting.length >= LoginLimiter.MAX_WAITING) {
      throw new TooManyAttemptsError('too many logins at once: try again in a second', 1)
    }
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const waiter: Waiter = { address, start: () => { clearTimeout(timer); resolve() } }
      this.waiting.push(waiter)
      this.next()
      if (!this.waiting.includes(waiter)) return // started at once
      timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1)
        reject(new TooManyAttemptsError('too many logins at once: try again in a second', 1))
      }, LoginLimiter.MAX_WAIT_MS)
    })
  }

  /** Starts the first waiting logins whose address has no check under way, while slots are free. */
  private next (): void {
    while (this.inFlight < LoginLimiter.MAX_CONCURRENT) {
      const index = this.waiting.findIndex((w) => !this.checking.has(w.address))
      if (index < 0) return
      const [waiter] = this.waiting.splice(index, 1) as [Waiter]
      this.inFlight++
      this.checking.add(waiter.address)
      waiter.start()
    }
  }

  private unpend (account: string): void {
    const left = (this.pending.get(account) ?? 1) - 1
    if (left === 0) this.pending.delete(account)
    else this.pending.set(account, left)
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
