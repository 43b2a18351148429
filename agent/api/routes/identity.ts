import { RoleForbiddenError } from '../../../identity/operators.ts'
import type { Principal } from '../../../identity/operators.ts'
import type { SystemEvent } from '../../../protocols/events.ts'
import { LoginRequestSchema, RegisterRequestSchema, RemoveOperatorSchema } from '../../../protocols/identity.ts'
import type { OperatorRole, OperatorView, RegisterRequest } from '../../../protocols/identity.ts'
import type { Logger } from '../../../common/logger.ts'
import { JsonReply, requestToken, SESSION_COOKIE } from '../server.ts'
import type { Caller } from '../server.ts'
import { actorOf, adminRoute, publicRoute, readBody, viewerRoute } from './route.ts'
import type { Routes } from './route.ts'

/** The operator accounts (identity/operators.ts's OperatorStore), as the API uses them. */
export interface Operators {
  login: (username: string, password: string, address: string) => Promise<{ token: string, expires_at: string, username: string, role: OperatorRole }>
  register: (request: RegisterRequest, actor: string) => Promise<OperatorView>
  list: () => OperatorView[]
  remove: (username: string, actor: string) => void
  auditLog: () => unknown[]
  authenticate: (token: string) => Principal | undefined
  logout: (token: string) => boolean
}

export interface IdentitySources {
  operators: Operators
  /** Tells the mesh (the system events topic); a failure is only logged: the account exists all the same. */
  publishEvent: (event: SystemEvent) => Promise<void>
  log: Logger
}

/** Operator accounts: logging in (open to all), and registering, listing and removing them (admins). */
export function identityRoutes ({ operators, publishEvent, log }: IdentitySources): Routes {
  return {
    // The Unix socket is trusted (its group is the box's operators): its requests act as "local".
    'POST /api/v1/identity/login': publicRoute(async (req, caller) => {
      const { username, password, session } = await readBody(req, LoginRequestSchema)
      const login = await operators.login(username, password, req.socket.remoteAddress ?? 'local')
      if (session !== true) return login
      const { token, ...seen } = login
      const maxAgeS = Math.max(0, Math.floor((Date.parse(login.expires_at) - Date.now()) / 1000))
      return new JsonReply(200, seen, { 'set-cookie': sessionCookie(token, maxAgeS, caller) })
    }),
    // Ends the caller's own session or token, whatever it is (public: an expired one is ended all the same).
    'POST /api/v1/identity/logout': publicRoute((req, caller) => {
      const given = requestToken(req)
      if (given !== undefined) operators.logout(given.token)
      return new JsonReply(200, { loggedOut: given !== undefined }, { 'set-cookie': sessionCookie('', 0, caller) })
    }),
    'GET /api/v1/identity/me': viewerRoute((_req, caller) => caller.local ? { username: null, role: 'admin', local: true } : { username: caller.username, role: caller.role, local: false }),
    'POST /api/v1/identity/register': adminRoute(async (req, caller) => {
      const request = await readBody(req, RegisterRequestSchema)
      // As the schema says: roles are given only on the trusted socket, so a stolen admin token cannot mint admins.
      if (!caller.local && request.role !== 'viewer') throw new RoleForbiddenError(request.role)
      const created = await operators.register(request, actorOf(caller))
      publishEvent({ v: 1, type: 'operator.registered', at: Date.now(), userId: created.user_id, username: created.username })
        .catch((err: unknown) => { log.debug({ err }, 'registration event not published') })
      const { user_id: userId, username, email, created_at: createdAt, status } = created
      return new JsonReply(201, { user_id: userId, username, email, created_at: createdAt, status })
    }),
    'GET /api/v1/identity/users': adminRoute(() => operators.list()),
    'POST /api/v1/identity/users/remove': adminRoute(async (req, caller) => {
      operators.remove((await readBody(req, RemoveOperatorSchema)).username, actorOf(caller))
      return { removed: true }
    }),
    'GET /api/v1/identity/audit': adminRoute(() => operators.auditLog())
  }
}

/**
 * The page's session cookie: out of script's reach (HttpOnly), sent only by our own pages (SameSite=Strict), only
 * over HTTPS where the page came over HTTPS (Secure; the loopback listener is plain HTTP), for the whole site.
 */
function sessionCookie (token: string, maxAgeS: number, caller: Caller): string {
  const secure = !caller.local && caller.secure === true ? '; Secure' : ''
  return `${SESSION_COOKIE}=${token}; Path=/; Max-Age=${maxAgeS}; HttpOnly; SameSite=Strict${secure}`
}
