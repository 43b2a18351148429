import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Agent } from '../../../agent/main/agent.ts'
import { apiGet } from '../../../agent/cli/client.ts'
import type { StatusView } from '../../../agent/api/views.ts'
import { loadConfig } from '../../../agent/config/config.ts'
import { createLogger } from '../../../common/logger.ts'
import { HeavyModules } from '../../../runtime/loader.ts'
import { tempDir, writeSwarmKey } from '../../helpers/agents.ts'

/** The loader of a core release: neither onnxruntime-node nor node-av can be found. */
const core = () => new HeavyModules({ names: { inference: 'onnxruntime-node-not-installed', media: 'node-av-not-installed/api' } })

function configIn (dir: string, work: unknown[] = []) {
  const file = join(dir, 'noodle.json')
  writeFileSync(file, JSON.stringify({ work }))
  return loadConfig({
    env: {},
    flags: { 'data-dir': dir, 'no-mdns': true, listen: ['/ip4/127.0.0.1/tcp/0'], 'swarm-key': writeSwarmKey(join(dir, 'swarm.key')), config: file }
  })
}

t.test('without onnxruntime and node-av an agent runs its mesh and API', async (t) => {
  const dir = tempDir(t)
  const config = configIn(dir)
  const agent = await Agent.create({ config, log: createLogger('silent'), modules: core() })
  await agent.start()
  t.teardown(() => agent.stop())
  const status = await apiGet<StatusView>(config.api.socketPath, '/api/v1/system/status')
  t.equal(status.peerId, agent.mesh.peerId.toString(), 'its API answers')
})

t.test('without them, a camera configured on the box is refused at start, named', async (t) => {
  const dir = tempDir(t)
  const config = configIn(dir, [{ id: 'yard', kind: 'camera', source: 'rtsp://192.0.2.1/stream', model: 'a'.repeat(64) }])
  await t.rejects(Agent.create({ config, log: createLogger('silent'), modules: core() }), {
    name: 'ModuleUnavailableError', code: 'ERR_MODULE_UNAVAILABLE', message: /^camera yard needs node-av-not-installed\/api, which is not installed here/
  })
})
