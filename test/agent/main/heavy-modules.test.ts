import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startAgent, stopAgents, tempDir, writeSwarmKey } from '../../helpers/agents.ts'

/** The native libraries and addons an agent's process has mapped: what native code it has loaded, all threads. */
function nativeCode (pid: number | undefined): string[] {
  const files = readFileSync(`/proc/${pid ?? 0}/maps`, 'utf8').split('\n').map((line) => line.split(/\s+/)[5] ?? '')
  return [...new Set(files.filter((f) => /\.(node|so[.\d]*)$/.test(f)))]
}

t.test('an agent with no camera and no model loads neither onnxruntime nor node-av', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({ root, name: 'sensor-box', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')) })
  t.teardown(() => stopAgents([agent]))
  // Started, serving its API, beaconing: a box that only ingests sensors is what it is now.
  const loaded = nativeCode(agent.child.pid)
  t.match(loaded.filter((f) => f.includes('better-sqlite3')), [/better-sqlite3\/.*\.node$/], 'its store\'s addon is loaded (the check sees addons)')
  t.same(loaded.filter((f) => /onnxruntime|node-av|libav/.test(f)), [], 'no onnxruntime, no node-av (FFmpeg)')
})
