import { hostname } from 'node:os'
import { NoodleError, RequestRefusedError } from '../../../common/errors.ts'
import type { StaticFiles } from '../static-files.ts'
import type { IncomingMessage } from 'node:http'
import { publicRoute, viewerRoute } from './route.ts'
import type { Routes } from './route.ts'

/** Where the API's TCP listeners are bound, once started (ControlApi fills it in): what `noodle ui` prints. */
export interface ListenerAddresses {
  tcp?: { host: string, port: number }
  loopback?: { host: string, port: number }
}

export interface PageSources {
  page: StaticFiles
  listening: ListenerAddresses
}

/** What `GET /api/v1/ui` answers: the page's addresses, each with how to reach it. */
export interface UiView {
  urls: Array<{ url: string, how: string }>
}

/** A file of the page that is not there. */
export class NoSuchPageFileError extends NoodleError {
  readonly httpStatus = 404

  constructor (name: string) {
    super('ERR_NOT_FOUND', `the page has no file ${name}`)
  }
}

/** The page's addresses: HTTPS by this box's name (0.0.0.0 listens on all of them), the loopback one by tunnel. */
export function uiView ({ tcp, loopback }: ListenerAddresses, name = hostname()): UiView {
  const urls: UiView['urls'] = []
  if (tcp !== undefined) {
    const host = tcp.host === '0.0.0.0' || tcp.host === '::' ? name : tcp.host.includes(':') ? `[${tcp.host}]` : tcp.host
    urls.push({ url: `https://${host}:${tcp.port}/`, how: 'over HTTPS (api.tcp)' })
  }
  if (loopback !== undefined) {
    urls.push({ url: `http://127.0.0.1:${loopback.port}/`, how: `on this box only (ui.http): from elsewhere, ssh -L ${loopback.port}:127.0.0.1:${loopback.port} ${name}, then open it` })
  }
  return { urls }
}

/**
 * The web page (issue 16): its files, public (they hold no data: every API call they make needs a session), and
 * the live feed's route, which only a WebSocket upgrade reaches (ControlApi hands those to the feed).
 */
export function pageRoutes ({ page, listening }: PageSources): Routes {
  const file = (name: string, req: IncomingMessage) => {
    const answer = page.answer(name, req)
    if (answer === undefined) throw new NoSuchPageFileError(name)
    return answer
  }
  const under = (...names: string[]) => publicRoute((req, _caller, _query, params) => file(names.map((n) => params?.[n] ?? '').join('/'), req))
  return {
    'GET /': publicRoute((req) => file('index.html', req)),
    'GET /ui/{a}': under('a'),
    'GET /ui/{a}/{b}': under('a', 'b'),
    'GET /ui/{a}/{b}/{c}': under('a', 'b', 'c'),
    'GET /api/v1/live': viewerRoute(() => { throw new RequestRefusedError(426, 'ERR_UPGRADE_REQUIRED', '/api/v1/live is a WebSocket: connect with an Upgrade: websocket request') }),
    'GET /api/v1/ui': viewerRoute(() => uiView(listening))
  }
}
