#!/usr/bin/env node
/**
 * What liveness costs on the wire, per message between two members (bytes on loopback, IP and TCP headers
 * included, both directions): a libp2p ping on a new stream (libp2p's `ping()`), one on a stream kept open
 * (PingStreams, what the prober uses), and a health pulse published to one peer.
 *
 *   ip netns add pc && ip netns exec pc node bench/ping-cost.ts [--json]; ip netns del pc
 *
 * Run it in a fresh network namespace: it counts every byte of the namespace's loopback.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PingStreams } from '../agent/membership/ping-streams.ts'
import { readSwarmKey } from '../identity/keys.ts'
import { healthCodec, recordOf, revOf, wireOf } from '../protocols/health.ts'
import { TOPICS } from '../protocols/topics.ts'
import { writeSwarmKey } from '../scripts/agents.ts'
import { bareNode } from '../scripts/bare-node.ts'
import { sampleBeacon } from '../scripts/beacon.ts'

const ROUNDS = 200
const loopback = (): number => {
  const [lo] = JSON.parse(execFileSync('ip', ['-s', '-j', 'link', 'show', 'lo'], { encoding: 'utf8' })) as Array<{ stats64: { tx: { bytes: number } } }>
  return lo?.stats64.tx.bytes ?? 0
}
const perRound = async (round: () => Promise<unknown>): Promise<number> => {
  const before = loopback()
  for (let i = 0; i < ROUNDS; i++) await round()
  await new Promise((resolve) => setTimeout(resolve, 300))
  return Math.round((loopback() - before) / ROUNDS)
}

execFileSync('ip', ['link', 'set', 'lo', 'up'])
const dir = mkdtempSync(join(tmpdir(), 'ping-cost-'))
const psk = readSwarmKey(writeSwarmKey(join(dir, 'swarm.key')))
const [a, b] = [await bareNode(psk), await bareNode(psk)]
try {
  await a.dial(b.getMultiaddrs()[0] as never)
  a.services.pubsub.subscribe(TOPICS.nodeHealth)
  b.services.pubsub.subscribe(TOPICS.nodeHealth)
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  const newStream = await perRound(() => a.services.ping.ping(b.peerId))
  const pings = new PingStreams({ node: a })
  const openStream = await perRound(() => pings.ping(b.peerId, { signal: AbortSignal.timeout(5_000) }))
  pings.stop()
  const beacon = sampleBeacon({ name: 'box-07', startedAt: Date.now(), uptimeS: 8_000.3, cpuPct: 12.3, load1: 0.57, memUsedBytes: 3.2e9, memTotalBytes: 8e9, diskFreeBytes: 120e9, tempC: 47.1 })
  const pulse = healthCodec.encode(wireOf(beacon, revOf(recordOf(beacon))))
  const published = await perRound(async () => {
    await a.services.pubsub.publish(TOPICS.nodeHealth, pulse)
    await new Promise((resolve) => setTimeout(resolve, 5))
  })
  if (process.argv.includes('--json')) {
    process.stdout.write(JSON.stringify({ newStream, openStream, pulse: published, pulseData: pulse.byteLength }) + '\n')
  } else {
    process.stdout.write(`bytes on the wire per message, both directions (${ROUNDS} rounds):\n` +
      `  ping on a new stream (libp2p ping())   ${newStream}\n` +
      `  ping on an open stream (PingStreams)   ${openStream}\n` +
      `  health pulse to one peer (${pulse.byteLength} B of data)  ${published}\n`)
  }
} finally {
  await a.stop()
  await b.stop()
  rmSync(dir, { recursive: true, force: true })
}
