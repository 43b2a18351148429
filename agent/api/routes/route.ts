import type { IncomingMessage } from 'node:http'
import type { z } from 'zod'
import { BadRequestError } from '../../../common/errors.ts'
import { parseBody, readJsonBody } from '../server.ts'
import type { Access, Caller, RouteHandler } from '../server.ts'

/** One endpoint: who may call it over HTTPS (the Unix socket is trusted), what answers it, and whether it takes a query. */
export interface Route {
  access: Access
  handle: RouteHandler
  takesQuery?: boolean
}

/** Endpoints by `METHOD /path`, as each routes module returns its part of the table. */
export type Routes = Record<string, Route>

/** Logging in is open to all (it is how a token is had). */
export function publicRoute (handle: RouteHandler): Route {
  return { access: 'public', handle }
}

/** Reading: any operator with a token, viewers included. */
export function viewerRoute (handle: RouteHandler): Route {
  return { access: 'viewer', handle }
}

/** Reading with query parameters, checked against `schema` before `handle` sees them. */
export function viewerQueryRoute<S extends z.ZodType> (schema: S, handle: (query: z.infer<S>, caller: Caller) => unknown): Route {
  return { access: 'viewer', takesQuery: true, handle: (_req, caller, query) => handle(parseQuery(schema, query ?? new URLSearchParams()), caller) }
}

/** A request's query parameters, each given once, checked against its schema: a refusal names the parameter. */
export function parseQuery<S extends z.ZodType> (schema: S, query: URLSearchParams): z.infer<S> {
  // No prototype: `__proto__` is a key like any other (given twice, refused; unknown, refused).
  const params: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [key, value] of query) {
    if (Object.hasOwn(params, key)) throw new BadRequestError('is given more than once', key)
    params[key] = value
  }
  return parseBody(schema, params)
}

/** A path's `{name}` segment, checked against its schema: a refusal names it (never repeating what was sent). */
export function pathParam<S extends z.ZodType> (schema: S, params: Record<string, string> | undefined, name: string): z.infer<S> {
  const value = params?.[name]
  if (value === undefined) throw new BadRequestError('is missing', name)
  const result = schema.safeParse(value)
  if (!result.success) throw new BadRequestError((result.error.issues[0] as z.core.$ZodIssue).message, name)
  return result.data
}

/** Acting on the mesh (optimize, models, forgetting sensors). */
export function operatorRoute (handle: RouteHandler): Route {
  return { access: 'operator', handle }
}

/** Managing operators. */
export function adminRoute (handle: RouteHandler): Route {
  return { access: 'admin', handle }
}

/** A request's JSON body, checked against its schema: a refusal names the field at fault. */
export async function readBody<S extends z.ZodType> (req: IncomingMessage, schema: S): Promise<z.infer<S>> {
  return parseBody(schema, await readJsonBody(req))
}

/** Who the audit log names for a request. */
export function actorOf (caller: Caller): string {
  return caller.local ? 'local' : caller.username ?? 'anonymous'
}

/**
 * What ControlApi takes from a route table: the handlers, and the rule its HTTPS listener judges callers by.
 * ControlApi asks `access` only for routes it has, so a route that is not in the table is never reached; were it
 * asked, the strictest role answers.
 */
export function routeTable (routes: Routes): { handlers: Record<string, RouteHandler>, access: (route: string) => Access, queryRoutes: ReadonlySet<string> } {
  const entries = Object.entries(routes)
  const access = new Map(entries.map(([route, r]) => [route, r.access]))
  return {
    handlers: Object.fromEntries(entries.map(([route, r]) => [route, r.handle])),
    access: (route) => access.get(route) ?? 'admin',
    queryRoutes: new Set(entries.filter(([, r]) => r.takesQuery === true).map(([route]) => route))
  }
}
