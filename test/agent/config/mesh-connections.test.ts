import t from 'tap'
import { loadConfig } from '../../../agent/config/config.ts'
import { ConfigError } from '../../../common/errors.ts'

// mesh.connections: 0 (full mesh) by default; a partial mesh needs a gossip degree of 1 to K.

const load = (env: Record<string, string>) => loadConfig({ env, flags: { 'data-dir': '/tmp/noodle-unused' } })

t.test('mesh.connections defaults to 0 (a full mesh) and takes K with a gossip degree of 1 to K', async (t) => {
  t.equal(load({}).mesh.connections, 0)
  const c = load({ NOODLE_MESH_CONNECTIONS: '6', NOODLE_GOSSIP_DEGREE: '3' })
  t.same([c.mesh.connections, c.gossip.degree], [6, 3])
  t.same(load({ NOODLE_MESH_CONNECTIONS: '2', NOODLE_GOSSIP_DEGREE: '2' }).mesh, { connections: 2 })
})

t.test('a partial mesh without a gossip degree, or one past K, is refused, naming gossip.degree', async (t) => {
  for (const degree of ['0', '7']) {
    let err: unknown
    try {
      load({ NOODLE_MESH_CONNECTIONS: '6', NOODLE_GOSSIP_DEGREE: degree })
    } catch (e) {
      err = e
    }
    t.ok(err instanceof ConfigError, `degree ${degree}: a ConfigError`)
    t.match((err as ConfigError).key, 'gossip.degree')
    t.match((err as Error).message, /must be 1 to mesh\.connections/)
  }
})
