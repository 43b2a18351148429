import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { LoopLag } from '../../../agent/membership/loop-lag.ts'
import { isRefused, knock, tcpTargets } from '../../../agent/mesh/knock.ts'

t.test('the knock tells a listening port from a closed one', async (t) => {
  const server = createServer((socket) => { socket.destroy() })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  t.equal(await knock([{ host: '127.0.0.1', port }], 1_000), 'connected')
  server.close()
  await new Promise((resolve) => server.once('close', resolve))
  t.equal(await knock([{ host: '127.0.0.1', port }], 1_000), 'refused', 'nothing listens any more')
  t.equal(await knock([], 1_000), 'failed', 'no address: nothing to conclude')
})

t.test('TCP targets come from multiaddrs; refusals are recognised through wrappers', async (t) => {
  t.same(tcpTargets(['/ip4/10.0.0.5/tcp/4001', '/ip6/::1/tcp/9', '/ip4/10.0.0.5/udp/1', '/dns4/pi.local/tcp/4001/p2p/x']),
    [{ host: '10.0.0.5', port: 4001 }, { host: '::1', port: 9 }, { host: 'pi.local', port: 4001 }])
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
  t.ok(isRefused(refused))
  t.ok(isRefused(new AggregateError([refused, refused])), 'every address refused')
  t.notOk(isRefused(new AggregateError([refused, new Error('timeout')])), 'one address silent: not proven gone')
  t.notOk(isRefused(new AggregateError([])))
  t.ok(isRefused(new Error('dial failed', { cause: refused })))
  t.notOk(isRefused(null))
})

t.test('loop lag: late samples raise the scale (up to 8×), which decays once the loop is on time', async (t) => {
  let now = 0
  const lag = new LoopLag({ expectedMs: 50, now: () => now })
  t.equal(lag.sample(), 0, 'the first sample sets the baseline')
  now += 50
  t.equal(lag.sample(), 0, 'on time')
  t.equal(lag.scale, 1)
  now += 90
  t.equal(lag.sample(), 40, 'a little late…')
  t.equal(lag.scale, 1, '…is noise')
  now += 350
  t.equal(lag.sample(), 300, '300 ms late')
  t.equal(lag.ms, 300)
  t.equal(lag.scale, 3, '+1 per 100 ms beyond the first 100')
  now += 5_050
  lag.sample()
  t.equal(lag.scale, 8, 'capped at 8')
  for (let i = 0; i < 1_000; i++) { now += 50; lag.sample() }
  t.ok(lag.scale < 1.01, 'forgotten after a while on time')
})
