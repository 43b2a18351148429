import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Database as DB } from 'better-sqlite3'
import { BadRequestError, NoodleError } from '../common/errors.ts'
import type { TableSet } from '../common/schema.ts'
import { DAY_MS } from '../common/schema.ts'
import type { OperatorRole, OperatorView, RegisterRequest } from '../protocols/identity.ts'
import { LoginLimiter } from './login-limiter.ts'
import { hashPassword, passwordProblem, verifyPassword } from './password.ts'

/** How long an API token lasts: a working day and a bit, so a lost one does not grant access for long. */
export const TOKEN_TTL_MS = 12 * 3_600_000

/** A wrong username or password: one answer for both, so the answer does not tell which names exist. */
export class InvalidCredentialsError extends NoodleError {
  readonly httpStatus = 401

  constructor () {
    super('ERR_CREDENTIALS', 'wrong username or password')
  }
}

/** Who a valid API token belongs to. */
export interface Principal { userId: string, username: string, role: OperatorRole }

/** A username or email that another account has: 409, naming the field. */
export class TakenError extends NoodleError {
  readonly httpStatus = 409
  readonly field: string

  constructor (field: 'username' | 'email') {
    super('ERR_TAKEN', `${field}: another operator already has it`)
    this.field = field
  }
}

export class UnknownOperatorError extends NoodleError {
  readonly httpStatus = 404

  constructor (username: string) {
    super('ERR_UNKNOWN_OPERATOR', `no operator is called ${username}`)
  }
}

/** Removing the one admin left: refused, so that operators can always be managed over HTTPS (409). */
export class LastAdminError extends NoodleError {
  readonly httpStatus = 409

  constructor (username: string) {
    super('ERR_LAST_ADMIN', `${username} is the last admin: make another admin before removing it`)
  }
}

/** A role only the local socket may give (over HTTPS, new accounts are viewers): 403, naming the field. */
export class RoleForbiddenError extends NoodleError {
  readonly httpStatus = 403
  readonly field = 'role'

  constructor (role: OperatorRole) {
    super('ERR_FORBIDDEN', `role: over HTTPS a new account is a viewer; only the local socket (noodle user add --role) makes ${role}s`)
  }
}

/** Operator accounts, their API tokens and the audit log. The log is kept a year, tokens until they expire. */
export const OPERATOR_TABLES: TableSet = {
  name: 'operators',
  migrations: [
    {
      version: 7,
      sql: `
      -- Operator accounts: who may use the API beyond the local socket.
      CREATE TABLE operators (
        user_id       TEXT PRIMARY KEY,      -- a random UUID
        username      TEXT NOT NULL UNIQUE,  -- lower case
        email         TEXT NOT NULL UNIQUE,  -- lower case
        password_hash TEXT NOT NULL,         -- scrypt$N$r$p$salt$hash, never the password
        first_name    TEXT NOT NULL,
        last_name     TEXT NOT NULL,
        phone         TEXT,
        role          TEXT NOT NULL,         -- viewer, operator or admin
        status        TEXT NOT NULL,         -- active
        created_at    INTEGER NOT NULL
      );
      -- Administrative actions: who did what to what, and when.
      CREATE TABLE audit_log (
        id     INTEGER PRIMARY KEY,
        at     INTEGER NOT NULL,
        actor  TEXT NOT NULL,                -- "local" for the Unix socket, else a username
        action TEXT NOT NULL,                -- operator.register, operator.remove…
        target TEXT NOT NULL,
        detail TEXT NOT NULL
      );
      -- API tokens for the TCP listener: only their sha256 is kept, so a copy of the store grants nothing.
      CREATE TABLE api_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES operators (user_id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `
    },
    {
      version: 9,
      sql: `
      -- Retention prunes these tables by time through these indexes.
      CREATE INDEX audit_log_at ON audit_log (at);
      CREATE INDEX api_tokens_expires_at ON api_tokens (expires_at);
    `
    }
  ],
  retention: [
    { table: 'audit_log', time: 'at', key: 'id', maxAgeMs: 365 * DAY_MS, maxRows: 100_000 },
    { table: 'api_tokens', time: 'expires_at', key: 'expires_at', maxAgeMs: 0, maxRows: 10_000 }
  ]
}

interface OperatorRow { user_id: string, username: string, email: string, role: OperatorRole, status: 'active', created_at: number }

function view (row: OperatorRow): OperatorView {
  return { user_id: row.user_id, username: row.username, email: row.email, role: row.role, status: row.status, created_at: new Date(row.created_at).toISOString() }
}

/**
 * Operator accounts and the audit log (OPERATOR_TABLES). Usernames and emails are kept in lower case, so
 * "Ana" and "ana" are one account. Every change is audited, with who made it.
 */
export class OperatorStore {
  private readonly db: DB
  private readonly limiter: LoginLimiter
  /** Checked against when the username is unknown, so that a miss takes as long as a wrong password. */
  private dummyHash: Promise<string> | undefined

  private prepared: ReturnType<OperatorStore['prepare']> | undefined

  constructor (components: { db: DB, limiter?: LoginLimiter }) {
    this.db = components.db
    this.limiter = components.limiter ?? new LoginLimiter()
  }

  /** Compiled on first use, once (authenticate runs on every API request over TCP). */
  private get statements (): ReturnType<OperatorStore['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    const db = this.db
    return {
      credentials: db.prepare<[string], { user_id: string, role: OperatorRole, password_hash: string }>('SELECT user_id, role, password_hash FROM operators WHERE username = ?'),
      insertToken: db.prepare('INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)'),
      dropExpiredTokens: db.prepare('DELETE FROM api_tokens WHERE expires_at < ?'),
      dropToken: db.prepare<[string]>('DELETE FROM api_tokens WHERE token_hash = ?'),
      principal: db.prepare<[string, number], { user_id: string, username: string, role: OperatorRole }>(`
        SELECT o.user_id, o.username, o.role FROM api_tokens t JOIN operators o ON o.user_id = t.user_id
        WHERE t.token_hash = ? AND t.expires_at > ?`),
      insertOperator: db.prepare(`INSERT INTO operators (user_id, username, email, password_hash, first_name, last_name, phone, role, status, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      list: db.prepare<[], OperatorRow>('SELECT user_id, username, email, role, status, created_at FROM operators ORDER BY username'),
      role: db.prepare<[string], { role: OperatorRole }>('SELECT role FROM operators WHERE username = ?'),
      admins: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM operators WHERE role = 'admin'"),
      deleteOperator: db.prepare('DELETE FROM operators WHERE username = ?'),
      auditLog: db.prepare<[number], { at: number, actor: string, action: string, target: string, detail: string }>(
        'SELECT at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?'),
      taken: db.prepare<[string, string], { username: string }>('SELECT username FROM operators WHERE username = ? OR email = ?'),
      audit: db.prepare('INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)')
    }
  }

  /**
   * A password login from `address` (the client's, for the limiter's share per address): a fresh API token (shown
   * once; only its hash is kept), or 401, or 429 when rate limited.
   */
  async login (username: string, password: string, address = 'local'): Promise<{ token: string, expires_at: string, username: string, role: OperatorRole }> {
    const name = username.toLowerCase()
    const { ok, value: row } = await this.limiter.attempt(name, async () => {
      const found = this.statements.credentials.get(name)
      this.dummyHash ??= hashPassword('not anybody\'s password')
      const matches = await verifyPassword(password, found?.password_hash ?? await this.dummyHash)
      return { ok: found !== undefined && matches, value: found }
    }, address)
    if (!ok || row === undefined) throw new InvalidCredentialsError()
    const token = `nd_${randomBytes(32).toString('base64url')}`
    const now = Date.now()
    this.statements.insertToken.run(tokenHash(token), row.user_id, now, now + TOKEN_TTL_MS)
    this.statements.dropExpiredTokens.run(now)
    return { token, expires_at: new Date(now + TOKEN_TTL_MS).toISOString(), username: name, role: row.role }
  }

  /** Ends a token (a logout): whether it was one. */
  logout (token: string): boolean {
    return this.statements.dropToken.run(tokenHash(token)).changes > 0
  }

  /** The operator an API token belongs to, while it has not expired and the account exists. */
  authenticate (token: string): Principal | undefined {
    const row = this.statements.principal.get(tokenHash(token), Date.now())
    return row === undefined ? undefined : { userId: row.user_id, username: row.username, role: row.role }
  }

  async register (request: RegisterRequest, actor: string): Promise<OperatorView> {
    const username = request.username.toLowerCase()
    const email = request.email.toLowerCase()
    const problem = passwordProblem(request.password, { username, email })
    if (problem !== null) throw new BadRequestError(problem, 'password')
    this.checkFree(username, email)
    const hash = await hashPassword(request.password)
    const row: OperatorRow = { user_id: randomUUID(), username, email, role: request.role, status: 'active', created_at: Date.now() }
    const { first_name: first, last_name: last, phone } = request.profile
    this.db.transaction(() => {
      this.checkFree(username, email) // again: another registration may have taken it while we hashed
      this.statements.insertOperator.run(row.user_id, username, email, hash, first, last, phone ?? null, row.role, row.status, row.created_at)
      this.audit(actor, 'operator.register', username, `role ${row.role}`)
    })()
    return view(row)
  }

  list (): OperatorView[] {
    return this.statements.list.all().map(view)
  }

  /** Deletes an account, never the last admin (LastAdminError): checked and done in one transaction. */
  remove (username: string, actor: string): void {
    const name = username.toLowerCase()
    this.db.transaction(() => {
      const row = this.statements.role.get(name)
      if (row === undefined) throw new UnknownOperatorError(name)
      if (row.role === 'admin' && (this.statements.admins.get()?.n ?? 0) <= 1) {
        throw new LastAdminError(name)
      }
      this.statements.deleteOperator.run(name)
      this.audit(actor, 'operator.remove', name, '')
    })()
  }

  /** The audit log, newest first. */
  auditLog (limit = 100): Array<{ at: number, actor: string, action: string, target: string, detail: string }> {
    return this.statements.auditLog.all(limit)
  }

  private checkFree (username: string, email: string): void {
    const taken = this.statements.taken.get(username, email)
    if (taken !== undefined) throw new TakenError(taken.username === username ? 'username' : 'email')
  }

  private audit (actor: string, action: string, target: string, detail: string): void {
    this.statements.audit.run(Date.now(), actor, action, target, detail)
  }
}

function tokenHash (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}
