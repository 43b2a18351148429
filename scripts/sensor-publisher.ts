#!/usr/bin/env node
/**
 * Publishes sensor readings to an MQTT broker, as a separate process: for the tests, `bench/ingest` and the
 * demo. Message i (from --start) is `{"value": i}` on --topic, so a receiver can check that every message landed
 * exactly once. With --simulate, instead publishes a few plausible sensors once a second until stopped.
 *
 *   node scripts/sensor-publisher.ts --url mqtt://127.0.0.1:1883 --topic bench/s1 --count 100000 --qos 1
 *
 * Prints one JSON line when every message is acknowledged (QoS 1) or written (QoS 0): {"published", "ms",
 * "connects", "resent"}: a connection after the first sends unacknowledged messages again, and `resent` counts
 * those PUBLISH packets, so a receiver can tell the duplicates it owes to the publisher.
 */
import { parseArgs } from 'node:util'
import mqtt from 'mqtt'

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    topic: { type: 'string', default: 'sensors/sim' },
    count: { type: 'string', default: '1000' },
    start: { type: 'string', default: '0' },
    qos: { type: 'string', default: '1' },
    'client-id': { type: 'string' },
    simulate: { type: 'boolean', default: false }
  }
})
if (values.url === undefined) throw new Error('--url is required')
const qos = Number(values.qos) === 0 ? 0 : 1
const client = mqtt.connect(values.url, {
  clientId: values['client-id'] ?? `noodle-publisher-${process.pid}`,
  // A fixed id and a persistent session: QoS 1 messages unacknowledged when the broker goes are sent again.
  clean: values['client-id'] === undefined,
  reconnectPeriod: 200,
  connectTimeout: 5_000
})
client.on('error', (err) => { process.stderr.write(`publisher: ${err.message}\n`) })
let connects = 0
let publishPackets = 0
client.on('connect', () => { connects++ })
client.on('packetsend', (packet) => { if (packet.cmd === 'publish') publishPackets++ })

if (values.simulate) {
  // A kitchen, a greenhouse and a freezer, in the three payload shapes the agent reads.
  let t = 0
  setInterval(() => {
    t++
    client.publish('sensors/kitchen/temperature', (21 + Math.sin(t / 10)).toFixed(2), { qos })
    client.publish('sensors/greenhouse', JSON.stringify({ temperature: 26 + Math.sin(t / 7), humidity: 70 + 5 * Math.cos(t / 9) }), { qos })
    client.publish('sensors/freezer', JSON.stringify([{ n: 'temp', u: 'Cel', v: -18 + Math.random() }]), { qos })
  }, 1_000)
} else {
  const count = Number(values.count)
  const start = Number(values.start)
  const begun = performance.now()
  let done = 0
  let next = start
  const finished = (): void => {
    process.stdout.write(JSON.stringify({ published: count, ms: Math.round(performance.now() - begun), connects, resent: publishPackets - count }) + '\n')
    client.end(false, () => { process.exit(0) })
  }
  // At most WINDOW messages unacknowledged, like any real publisher (MQTT has 65535 packet ids in all).
  const WINDOW = 1_000
  const publishMore = (): void => {
    while (next < start + count && next - start - done < WINDOW) {
      client.publish(values.topic, `{"value":${next}}`, { qos }, () => {
        if (++done === count) finished()
        else publishMore()
      })
      next++
    }
  }
  if (count === 0) finished()
  else client.once('connect', publishMore)
}
