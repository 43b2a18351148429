import { execFileSync } from 'node:child_process'
import { request } from 'node:http'
import t from 'tap'
import { nodeHttp } from '../../common/http.ts'

/** Whether a fresh process that imports `what` (a module URL, or `node:http`) has loaded undici, Node's fetch. */
function loadsUndici (what: string): string {
  return execFileSync(process.execPath, ['--input-type=module', '-e',
    `await import(${JSON.stringify(what)}); process.stdout.write(String(process.moduleLoadList.some((m) => m.includes('undici'))))`], { encoding: 'utf8' })
}

t.test('nodeHttp is node:http itself', async (t) => {
  t.equal(nodeHttp().request, request)
})

t.test('the API server and the CLI client take http without loading undici (Node\'s fetch)', async (t) => {
  t.equal(loadsUndici(new URL('../../agent/api/server.ts', import.meta.url).href), 'false')
  t.equal(loadsUndici(new URL('../../agent/cli/client.ts', import.meta.url).href), 'false')
  t.equal(loadsUndici('node:http'), 'true', 'what they avoid: an ESM import of node:http reads its lazy WebSocket export')
})
