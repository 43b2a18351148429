import { resolve } from 'node:path'
import t from 'tap'
import { loadConfig } from '../../agent/config/config.ts'

const env = { XDG_STATE_HOME: '/state' }

t.test('the API and import settings: defaults, and bad values named with their source', async (t) => {
  const c = loadConfig({ env })
  t.same({ api: c.api, importDir: c.models.importDir, maxModelBytes: c.models.maxModelBytes },
    { api: { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, socketPath: '/state/noodle/agent.sock' }, importDir: undefined, maxModelBytes: 512 * 1024 * 1024 })
  t.equal(loadConfig({ env: { ...env, NOODLE_MODELS_IMPORT_DIR: 'models/in' } }).models.importDir, resolve('models/in'), 'importDir is made absolute')
  t.throws(() => loadConfig({ env: { ...env, NOODLE_API_HEADERS_TIMEOUT_MS: '40000' } }),
    { code: 'ERR_CONFIG', key: 'api.headersTimeoutMs', message: 'api.headersTimeoutMs: must not exceed api.requestTimeoutMs (from NOODLE_API_HEADERS_TIMEOUT_MS)' })
  t.throws(() => loadConfig({ env: { ...env, NOODLE_API_REQUEST_TIMEOUT_MS: '0' } }), { code: 'ERR_CONFIG', key: 'api.requestTimeoutMs' }, 'a timeout cannot be turned off')
  t.throws(() => loadConfig({ env: { ...env, NOODLE_MODELS_MAX_MODEL_BYTES: '10' } }), { code: 'ERR_CONFIG', key: 'models.maxModelBytes' })
})
