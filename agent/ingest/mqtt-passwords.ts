import { createHash, pbkdf2, timingSafeEqual } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { unwatchFile, watchFile } from 'node:fs'
import { readSmallFile } from '../../common/files.ts'
import type { Stats } from 'node:fs'
import { promisify } from 'node:util'
import { ConfigError } from '../../common/errors.ts'
import type { Logger } from '../../common/logger.ts'

/**
 * The embedded broker's users, from a password file as Mosquitto's `mosquitto_passwd` writes it, so operators
 * manage it with the tool they know: one `user:hash` a line, where the hash is
 *
 * - `$7$<iterations>$<salt, base64>$<hash, base64>`: PBKDF2-HMAC-SHA512 (Mosquitto 2's default), or
 * - `$6$<salt, base64>$<hash, base64>`: SHA-512 of the password then the salt (Mosquitto 1.6 and earlier).
 *
 * Blank lines and lines starting with `#` are skipped, as Mosquitto does. Plain-text passwords are refused
 * (`mosquitto_passwd -U FILE` hashes them).
 */

const pbkdf2Async = promisify(pbkdf2)

export type PasswordHash =
  | { scheme: 'sha512', salt: Buffer, hash: Buffer }
  | { scheme: 'pbkdf2-sha512', iterations: number, salt: Buffer, hash: Buffer }

/** A file that asks for more work per login than this could make every connection attempt a denial of service. */
export const MAX_PBKDF2_ITERATIONS = 10_000_000
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/
const SHA512_BYTES = 64

function base64Field (text: string | undefined, what: string): Buffer {
  if (text === undefined || !BASE64.test(text)) throw new Error(`its ${what} is not base64`)
  return Buffer.from(text, 'base64')
}

/** One hash as `mosquitto_passwd` writes it; throws an Error saying what is wrong with it. */
export function parseHash (text: string): PasswordHash {
  const fields = text.split('$')
  if (fields[0] !== '' || (fields[1] !== '6' && fields[1] !== '7')) {
    throw new Error('is not a $6$ or $7$ hash (plain-text passwords are not accepted: hash them with mosquitto_passwd -U)')
  }
  let parsed: PasswordHash
  if (fields[1] === '6') {
    if (fields.length !== 4) throw new Error('a $6$ hash has the form $6$<salt>$<hash>')
    parsed = { scheme: 'sha512', salt: base64Field(fields[2], 'salt'), hash: base64Field(fields[3], 'hash') }
  } else {
    if (fields.length !== 5) throw new Error('a $7$ hash has the form $7$<iterations>$<salt>$<hash>')
    const iterations = Number(fields[2])
    if (!/^\d{1,10}$/.test(fields[2] as string) || iterations < 1 || iterations > MAX_PBKDF2_ITERATIONS) {
      throw new Error(`its iteration count must be a whole number from 1 to ${MAX_PBKDF2_ITERATIONS}`)
    }
    parsed = { scheme: 'pbkdf2-sha512', iterations, salt: base64Field(fields[3], 'salt'), hash: base64Field(fields[4], 'hash') }
  }
  if (parsed.hash.length !== SHA512_BYTES) throw new Error(`its hash is ${parsed.hash.length} bytes, not ${SHA512_BYTES}`)
  return parsed
}

/** The users of a password file's text; `key` names the setting in the errors. */
export function parsePasswordFile (text: string, key: string): Map<string, PasswordHash> {
  const users = new Map<string, PasswordHash>()
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd()
    if (line === '' || line.startsWith('#')) return
    const colon = line.indexOf(':')
    if (colon <= 0) throw new ConfigError(key, `line ${i + 1} is not "user:hash"`)
    const user = line.slice(0, colon)
    if (users.has(user)) throw new ConfigError(key, `line ${i + 1}: user ${JSON.stringify(user)} is listed twice`)
    try {
      users.set(user, parseHash(line.slice(colon + 1)))
    } catch (err) {
      throw new ConfigError(key, `line ${i + 1}: the password of ${JSON.stringify(user)} ${(err as Error).message}`)
    }
  })
  return users
}

/** Whether `password` has the hash `entry`; the comparison takes the same time wherever the bytes differ. */
export async function passwordMatches (entry: PasswordHash, password: Buffer): Promise<boolean> {
  const derived = entry.scheme === 'sha512'
    ? createHash('sha512').update(password).update(entry.salt).digest()
    // Off the event loop: a costly hash must not stall the agent while someone tries passwords.
    : await pbkdf2Async(password, entry.salt, entry.iterations, SHA512_BYTES, 'sha512')
  return timingSafeEqual(derived, entry.hash)
}

/** Stands in for an unknown user, so that a wrong user name costs as long as a wrong password. */
const NOBODY: PasswordHash = { scheme: 'pbkdf2-sha512', iterations: 101, salt: Buffer.alloc(12), hash: Buffer.alloc(SHA512_BYTES) }

/**
 * The password file, read at start and again whenever it changes (polled every `pollMs`): a file that no
 * longer parses after a change is logged and the users read before stay in force. Emits `reloaded` after a
 * change was read, so that the broker can end the connections of users that are gone.
 */
export class PasswordFile extends EventEmitter<{ reloaded: [] }> {
  private readonly file: string
  private readonly key: string
  private readonly log: Logger
  private readonly pollMs: number
  private users = new Map<string, PasswordHash>()

  constructor (components: { file: string, key: string, log: Logger, pollMs?: number }) {
    super()
    this.file = components.file
    this.key = components.key
    this.log = components.log
    this.pollMs = components.pollMs ?? 2_000
  }

  /** Reads the file; throws a ConfigError naming the key when it cannot be read or parsed. */
  load (): void {
    let text: string
    try {
      text = readSmallFile(this.file).toString('utf8')
    } catch (err) {
      throw new ConfigError(this.key, `cannot read ${this.file}: ${(err as Error).message}`)
    }
    this.users = parsePasswordFile(text, this.key)
  }

  start (): void {
    this.load()
    watchFile(this.file, { interval: this.pollMs, persistent: false }, this.onChange)
  }

  stop (): void {
    unwatchFile(this.file, this.onChange)
  }

  get size (): number {
    return this.users.size
  }

  /** What the user's password is now (its hash, salt and scheme, as text); undefined for no such user. */
  fingerprint (username: string): string | undefined {
    const entry = this.users.get(username)
    if (entry === undefined) return undefined
    const cost = entry.scheme === 'pbkdf2-sha512' ? entry.iterations : 0
    return `${entry.scheme}$${cost}$${entry.salt.toString('base64')}$${entry.hash.toString('base64')}`
  }

  async check (username: string | undefined, password: Buffer | undefined): Promise<boolean> {
    const entry = username === undefined ? undefined : this.users.get(username)
    const matches = await passwordMatches(entry ?? NOBODY, password ?? Buffer.alloc(0))
    return entry !== undefined && password !== undefined && matches
  }

  private readonly onChange = (now: Stats, before: Stats): void => {
    if (now.mtimeMs === before.mtimeMs && now.size === before.size && now.ino === before.ino) return
    try {
      this.load()
      this.log.info({ file: this.file, users: this.users.size }, 'mqtt broker: password file reloaded')
      this.emit('reloaded')
    } catch (err) {
      this.log.error({ err, file: this.file }, 'mqtt broker: the changed password file is not usable; the users read before stay in force')
    }
  }
}
