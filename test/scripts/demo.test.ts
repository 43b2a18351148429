import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const DEMO = fileURLToPath(new URL('../../scripts/demo.ts', import.meta.url))

t.test('npm run demo -- --once: three agents, all alive, simulated sensors ingested, a camera finding text, a parcel\'s events, then a clean exit', async (t) => {
  const { code, stdout, stderr } = await new Promise<{ code: number, stdout: string, stderr: string }>((resolve) => {
    execFile(process.execPath, [DEMO, '--once'], { timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : 1, stdout, stderr })
    })
  })
  t.equal(code, 0, stderr)
  t.match(stdout, /^\$ noodle nodes --data-dir \S+demo-1\nNAME\s+PEER\s+STATE/)
  for (const name of ['demo-1', 'demo-2', 'demo-3']) t.match(stdout, new RegExp(`\\n${name}( \\*)?\\s+\\S{8}\\s+alive\\s+(member|coordinator)\\s+\\d+\\s+127\\.0\\.0\\.1:\\d+`))
  t.equal(stdout.match(/ coordinator /g)?.length, 1, 'one of them is the coordinator')
  t.match(stdout, /\$ noodle sensors --data-dir \S+demo-1\nSENSOR\s+METRIC\s+VALUE/, 'then the sensors ingested over MQTT')
  for (const [sensor, metric] of [['kitchen', 'temperature'], ['greenhouse', 'humidity'], ['freezer', 'temp']]) {
    t.match(stdout, new RegExp(`\\n${sensor}\\s+${metric}\\s+-?\\d`), `${sensor} ${metric}`)
  }
  t.match(stdout, /\$ noodle cameras --data-dir \S+demo-\d\nCAMERA\s+NODE\s+STATE.*\ncam-pattern\s+demo-\d\s+running\s+[\d.]+\s+[\d.]+\s+\d+\s+\d+ ms\s+[1-9]\d*\s+lavfi:testsrc/,
    'then the test-pattern camera, where the coordinator placed it, finding text')
  t.match(stdout, /\$ noodle events --data-dir \S+demo-3\nSTART\s+END\s+CAMERA\s+NODE\s+LABEL\s+SCORE\s+BOX\s+ZONES\s+ID\n/, 'then the events')
  t.match(stdout, /\n\S+Z\s+\S+Z\s+cam-porch\s+demo-3\s+parcel\s+0\.90\s+100,60,180,110\s+step\s+\S+\n/, 'among them the parcel that came and went on the porch')
  const dir = /--data-dir (\S+)\/demo-1/.exec(stdout)?.[1] ?? ''
  const { existsSync } = await import('node:fs')
  t.notOk(existsSync(dir), 'the demo removes its temporary folder')
})
