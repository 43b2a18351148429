import t from 'tap'
import { siblingModule } from '../../common/modules.ts'

t.test('a sibling module has the extension of the module that names it: sources run as .ts, a release as .js', async (t) => {
  t.equal(siblingModule('file:///opt/noodle/media/frame-source.ts', 'decode-worker').href, 'file:///opt/noodle/media/decode-worker.ts')
  t.equal(siblingModule('file:///opt/noodle/media/frame-source.js', 'decode-worker').href, 'file:///opt/noodle/media/decode-worker.js')
  t.equal(siblingModule(import.meta.url, 'http.test').href, new URL('./http.test.ts', import.meta.url).href)
})
