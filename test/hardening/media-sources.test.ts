import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { demuxerInput } from '../../media/frame-source.ts'
import { tempDir } from '../helpers/agents.ts'

const FRAME_SOURCE = fileURLToPath(new URL('../../media/frame-source.ts', import.meta.url))
const NODE_AV = fileURLToPath(new URL('../../node_modules/node-av/dist/api/index.js', import.meta.url))

t.test('a network source may use only the protocols of its own kind underneath', async (t) => {
  t.same(demuxerInput('rtsp://192.0.2.1/s').options, { protocol_whitelist: 'rtsp,rtsps,rtp,srtp,udp,tcp,tls', rtsp_transport: 'tcp' })
  t.same(demuxerInput('rtsps://192.0.2.1/s').options, { protocol_whitelist: 'rtsp,rtsps,rtp,srtp,udp,tcp,tls', rtsp_transport: 'tcp' })
  t.same(demuxerInput('https://192.0.2.1/s.m3u8').options, { protocol_whitelist: 'http,https,tls,tcp,crypto,httpproxy' })
  t.same(demuxerInput('rtmp://192.0.2.1/live').options, { protocol_whitelist: 'rtmp,rtmps,tcp,tls' })
  t.same(demuxerInput('srt://192.0.2.1:9000').options, { protocol_whitelist: 'srt,udp' })
  t.match(demuxerInput('http://192.0.2.1/s'), { live: true })
  t.same(demuxerInput('/var/lib/clip.mp4'), { input: '/var/lib/clip.mp4', live: false }, 'a file has no network options')
})

t.test('FFmpeg enforces it: an HTTP camera that redirects to a file on the box is refused by our list', async (t) => {
  const server = createServer((req, res) => { res.writeHead(302, { location: 'file:///etc/hostname' }); res.end() })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/cam`
  // In a child: FFmpeg says why on stderr, and a failed open must not touch this process.
  const script = join(tempDir(t), 'open.ts')
  writeFileSync(script, `import { Demuxer } from ${JSON.stringify(NODE_AV)}
import { demuxerInput } from ${JSON.stringify(FRAME_SOURCE)}
const { input, options } = demuxerInput(${JSON.stringify(url)})
try {
  await Demuxer.open(input, { options })
  console.log('opened')
} catch (err) {
  console.log('refused')
}
`)
  const { stdout, stderr } = await new Promise<{ stdout: string, stderr: string }>((resolve, reject) => {
    execFile(process.execPath, [script], { timeout: 30_000 }, (err, stdout, stderr) => { if (err != null) reject(err); else resolve({ stdout, stderr }) })
  })
  t.equal(stdout.trim(), 'refused')
  t.match(stderr, /Protocol 'file' not on whitelist 'http,https,tls,tcp,crypto,httpproxy'/, 'refused by the list demuxerInput gives')
})
