import { readFileSync } from 'node:fs'
import t from 'tap'
import { apiRoutes } from '../../agent/api/control.ts'
import type { ApiSources } from '../../agent/api/control.ts'

// docs/api.md and docs/operators.md state the API's contract: its paths, and the role each needs over HTTPS.
// They are checked against the route table the server runs, so a route added, moved or re-roled shows here.

const doc = (name: string): string => readFileSync(new URL(`../../docs/${name}`, import.meta.url), 'utf8')
// Building the table reads nothing of its sources: each handler reads them when called.
const routes = apiRoutes({} as ApiSources)

t.test('docs/api.md lists exactly the routes the server has', async (t) => {
  const documented = [...doc('api.md').matchAll(/^\| `((?:GET|POST|PUT|PATCH|DELETE) \/[^`]*)` \|/gm)].map((m) => m[1]!)
  t.same(documented.slice().sort(), Object.keys(routes).sort())
  t.equal(new Set(documented).size, documented.length, 'each route once')
})

t.test('the roles are those docs/operators.md gives', async (t) => {
  const operators = doc('operators.md')
  t.match(operators, /`viewer` may `GET` anything/)
  t.match(operators, /`operator` may also act: `POST \/api\/v1\/ahr\/optimize` and the models endpoints/)
  t.match(operators, /`admin` may also manage operators \(`\/api\/v1\/identity\/…`\)/)
  // Logging in is how a token is had; the identity paths are the admins'; other reads are the viewers', other acts
  // the operators' (forgetting a sensor among them, as docs/api.md says).
  t.match(operators, /but for `logout` \(anyone, of their own session\) and `me` \(any operator\)\. The web page's files \(`\/`, `\/ui\/…`\) are public/)
  const publicRoutes = ['POST /api/v1/identity/login', 'POST /api/v1/identity/logout', 'GET /']
  const documented = (route: string): string => publicRoutes.includes(route) || route.startsWith('GET /ui/')
    ? 'public'
    : route === 'GET /api/v1/identity/me' ? 'viewer'
      : route.includes(' /api/v1/identity/') ? 'admin' : route.startsWith('GET ') ? 'viewer' : 'operator'
  const actual = Object.fromEntries(Object.entries(routes).map(([route, r]) => [route, r.access]))
  t.same(actual, Object.fromEntries(Object.keys(routes).map((route) => [route, documented(route)])))
  t.match(doc('api.md'), /`POST \/api\/v1\/sensors\/forget`.*operators over HTTPS/)
})
