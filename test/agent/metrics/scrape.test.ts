import { request } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { apiText } from '../../../agent/cli/client.ts'
import { allSee, bootstrapAddr, gossip, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import { families, mistyped, untyped } from './families.ts'

function contentType (socketPath: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/metrics' }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.headers['content-type']) })
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('GET /metrics of a meshed agent: one registry, every family with HELP and its right TYPE', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const a = await startAgent({ root, name: 'scraped', swarmKeyFile })
  const b = await startAgent({ root, name: 'peer', swarmKeyFile, bootstrap: [await bootstrapAddr(a)] })
  t.teardown(() => stopAgents([a, b]))
  await waitFor('the two to see each other', () => allSee([a, b], [a, b], 'alive'), 20_000)
  // Health beacons are published and received: gossipsub has counted bytes both ways.
  const sent = (text: string) => Number(/^gossipsub_rpc_sent_bytes_total (\d+)$/m.exec(text)?.[1] ?? 0)
  const text = await eventually(() => apiText(a.socketPath, '/metrics'), (seen) => sent(seen) > 0 && /^gossipsub_rpc_recv_bytes_total [1-9]/m.test(seen))

  const found = families(text)
  t.same(untyped(found), [], 'every family has a # HELP and a # TYPE line')
  t.same(mistyped(found), [], 'every _total family is a counter, and only they are')
  t.match(found, {
    noodle_members: { type: 'gauge' },
    noodle_inference_seconds: { type: 'histogram' },
    noodle_ingest_received_total: { type: 'counter' },
    process_resident_memory_bytes: { type: 'gauge' },
    gossipsub_rpc_sent_bytes_total: { type: 'counter', help: /\S/ },
    gossipsub_msg_publish_count_total: { type: 'counter' },
    gossipsub_rpc_recv_bytes_total: { type: 'counter' },
    gossipsub_heartbeat_duration_seconds: { type: 'histogram' },
    gossipsub_score_avg: { type: 'gauge' }
  }, 'ours, prom-client\'s defaults and gossipsub\'s, in one text')
  t.match(text, /^noodle_members\{state="alive"\} 2$/m)
  t.match(text, /^gossipsub_cache_size\{cache="peers"\} 1$/m, 'gossipsub\'s scrape-time figures are collected')
  t.equal(Object.keys(found).length, new Set(text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2])).size, 'each family once')
  t.equal(await contentType(a.socketPath), 'text/plain; version=0.0.4; charset=utf-8', 'the content type is Prometheus\'s text format')

  // The gossip view reads the same counters, synchronously.
  const view = await gossip(a)
  const after = await apiText(a.socketPath, '/metrics')
  t.ok(view.sentBytes >= sent(text) && view.sentBytes <= sent(after), `the view's bytes sent (${view.sentBytes}) lie between two scrapes`)
  t.ok(view.published > 0, 'and it counts what this node published')
})
