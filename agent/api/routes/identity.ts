import { RoleForbiddenError } from '../../../identity/operators.ts'
import type { Principal } from '../../../identity/operators.ts'
import type { SystemEvent } from '../../../protocols/events.ts'
import { LoginRequestSchema, RegisterRequestSchema, RemoveOperatorSchema } from '../../../protocols/identity.ts'
import type { OperatorRole, OperatorView, RegisterRequest } from '../../../protocols/identity.ts'
import type { Logger } from '../../../common/logger.ts'
import { JsonReply } from '../server.ts'
import { actorOf, adminRoute, publicRoute, readBody } from './route.ts'
import type { Routes } from './route.ts'

/** The operator accounts (identity/operators.ts's OperatorStore), as the API uses them. */
export interface Operators {
  login: (username: string, password: string, address: string) => Promise<{ token: string, expires_at: string, username: string, role: OperatorRole }>
  register: (request: RegisterRequest, actor: string) => Promise<OperatorView>
  list: () => OperatorView[]
  remove: (username: string, actor: string) => void
  auditLog: () => unknown[]
  authenticate: (token: string) => Principal | undefined
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
    'POST /api/v1/identity/login': publicRoute(async (req) => {
      const { username, password } = await readBody(req, LoginRequestSchema)
      return await operators.login(username, password, req.socket.remoteAddress ?? 'local')
    }),
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
