import t from 'tap'
import { formatBench, formatCamerasTable, formatCompile, formatModelsTable, formatOptimize, formatSensorsTable } from '../../agent/cli/format.ts'
import { createLogger } from '../../common/logger.ts'
import { escapeText, nameText } from '../../common/text.ts'

/** Nothing that a terminal or systemd would act on: no C0/C1 control, no DEL, no line separator or bidi override. */
const INERT = /^[^\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]*$/

t.test('escapeText writes every character that could act as an escape, and leaves the rest', async (t) => {
  t.equal(escapeText('evil\nWATCHDOG_USEC=1'), 'evil\\nWATCHDOG_USEC=1', 'a newline cannot start a systemd command')
  t.equal(escapeText('\u001b[2Jgone\r\t'), '\\x1b[2Jgone\\r\\t', 'nor a terminal escape sequence')
  t.equal(escapeText('a\u0000b\u007fc\u009bd'), 'a\\x00b\\x7fc\\x9bd', 'NUL, DEL and the 8-bit CSI')
  t.equal(escapeText('txt\u202eexe.\u2028x\u2066'), 'txt\\u202eexe.\\u2028x\\u2066', 'bidi overrides and line separators')
  t.equal(escapeText('température 21°C, 居間 🌡'), 'température 21°C, 居間 🌡', 'printable text of any script is kept')
  t.equal(nameText.safeParse('pi-kitchen.2_a').success, true)
  t.equal(nameText.safeParse('evil\nx').success, false)
  t.equal(nameText.safeParse('a/b').success, false)
  t.equal(nameText.safeParse('-a').success, false)
})

t.test('CLI tables and lines escape names from the wire: a hostile sensor, label, model or error cannot drive the terminal', async (t) => {
  const hostile = 'kitchen\u001b[2J\u001b]0;pwned\u0007\nfake row'
  const now = Date.parse('2026-01-01T00:00:10Z')
  const sensors = formatSensorsTable([{ sensor: hostile, metric: `temp${'\u009b'}31m`, value: 21.5, ts: '2026-01-01T00:00:09Z', lastSeen: '2026-01-01T00:00:09Z', count: 3, ratePerS: 1 }], now)
  t.match(sensors, INERT)
  t.equal(sensors.split('\n').length, 3, 'a header, one row, and nothing the name smuggled in')
  t.match(sensors, /kitchen\\x1b\[2J\\x1b\]0;pwned\\x07\\nfake row\s+temp\\x9b31m\s+21\.5/)

  const cameras = formatCamerasTable([{ camera: 'cam-1', node: 'n', peerId: 'peer-a', source: `rtsp://x/${hostile}`, model: null, state: 'failed', fpsIn: null, fpsInferred: null, skipped: null, latencyMs: null, detections: null, decoder: null, detector: null, outputErrors: null, motionFrames: null, stillFrames: null, error: `label ${hostile}` }])
  t.match(cameras, INERT)
  t.equal(cameras.split('\n').length, 3)

  const model = { id: 'ab'.repeat(32), name: hostile, sizeBytes: 1, opset: 13, inputs: [{ name: hostile, dtype: 'float32', shape: [1, 3] }], outputs: [{ name: 'o\u001b[1m', dtype: 'float32', shape: ['n'] }], providers: [{ name: 'cpu', p50Ms: 1, p99Ms: 2 }], createdAt: '2026-01-01T00:00:00Z' }
  t.match(formatModelsTable([model] as never), INERT)
  const compiled = formatCompile({ ...model, reused: false } as never)
  t.match(compiled, INERT)
  t.equal(compiled.split('\n').length, 5, 'one line per input, output and provider')
  t.match(formatBench({ id: model.id, provider: `cpu${hostile}`, runs: 1, p50Ms: 1, p99Ms: 1, perSecond: 1 } as never), INERT)
  const optimized = formatOptimize({ v: 1, coordinator: '12D3KooWcccccccc33333333', term: 2, decisions: [{ id: 'd-1', target: '12D3KooWcccccccc33333333', action: 'run', workId: 'cam-1', reason: hostile }] } as never)
  t.match(optimized, INERT)
  t.equal(optimized.split('\n').length, 3)
})

t.test('a log line shows a hostile sensor name as escapes, and is the same JSON', async (t) => {
  const lines: string[] = []
  const log = createLogger('info', { write: (line: string) => { lines.push(line) } })
  const sensor = 'kitchen\u001b[2J\n\u009b31m\u202etxt.exe\u2028x\u007f'
  log.info({ sensor }, `reading from ${sensor}`)
  t.equal(lines.length, 1)
  const line = lines[0] as string
  t.match(line, INERT)
  t.match(line, /"sensor":"kitchen\\u001b\[2J\\n\\u009b31m\\u202etxt\.exe\\u2028x\\u007f"/)
  t.match(JSON.parse(line), { sensor, msg: `reading from ${sensor}` }, 'parsed back, the values are what was logged')
})
