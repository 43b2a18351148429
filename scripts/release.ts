/**
 * Builds a release tarball for one platform (run through scripts/release.sh): the app, its production
 * dependencies, and only that platform's native binaries, without what a running agent never reads.
 *
 *   scripts/release.sh linux-x64|linux-arm64 [--core] [--out DIR]
 *
 * The dependency tree is the one package-lock.json pins, walked from the app's dependencies; an optional
 * dependency ships only when it is the target platform's package (node-av's addon), so node-av's optional WebRTC
 * stack stays out. The target's binaries that npm did not install here (another architecture's Node, node-av
 * addon) are fetched with `npm pack` and checked against the lock. Every ELF file of the result must be built for
 * the target, or no tarball is made. The tarball's path is the last line on stdout; progress goes to stderr.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HEAVY_MODULES } from '../runtime/loader.ts'

export const ARCHES = ['linux-x64', 'linux-arm64'] as const
export type Arch = typeof ARCHES[number]

/**
 * The packages only camera and model work needs, a --core release leaves them out: the packages of the modules the
 * agent's loader (runtime/loader.ts) looks for, so that what a core release lacks and what its agent expects to
 * lack stay one list.
 */
export const HEAVY_PACKAGES = Object.values(HEAVY_MODULES).map((specifier) => packageOfSpecifier(specifier)).sort()

/** The package a module specifier names: node-av/api is node-av, @s/b/c is @s/b. */
function packageOfSpecifier (specifier: string): string {
  return specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/')
}

/** The ELF e_machine of each target: x86-64 and AArch64. */
export const ELF_MACHINE: Record<Arch, number> = { 'linux-x64': 62, 'linux-arm64': 183 }

/** The parts of the repository a running agent (and install.sh) needs. */
const APP_PARTS = ['agent', 'bin', 'common', 'identity', 'media', 'protocols', 'runtime', 'systemd', 'ui', 'scripts/install.sh', 'scripts/uninstall.sh',
  'package.json', 'package-lock.json', '.npmrc', 'README.md', 'LICENSE']

export interface LockPackage {
  version?: string
  integrity?: string
  dev?: boolean
  optional?: boolean
  os?: string[]
  cpu?: string[]
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
  peerDependenciesMeta?: Record<string, { optional?: boolean }>
}

export interface Lock { packages: Record<string, LockPackage> }

/** Where Node finds package `name` from the package at lock path `from` ('' for the app). */
export function resolveIn (lock: Lock, from: string, name: string): string | undefined {
  let dir = from
  for (;;) {
    const candidate = dir === '' ? `node_modules/${name}` : `${dir}/node_modules/${name}`
    if (lock.packages[candidate] !== undefined) return candidate
    if (dir === '') return undefined
    const cut = dir.lastIndexOf('/node_modules/')
    dir = cut === -1 ? '' : dir.slice(0, cut)
  }
}

/** Whether a package that names the platforms it runs on (npm's os and cpu fields) runs on `arch`. */
function forPlatform (entry: LockPackage, arch: Arch): boolean {
  const [os, cpu] = arch.split('-') as [string, string]
  return entry.os?.includes(os) === true && entry.cpu?.includes(cpu) === true
}

/**
 * The lock paths (node_modules/…) of the packages a release ships, sorted: the app's dependencies and theirs,
 * and their non-optional peers, but no @types/ package. An optional dependency ships only when it is a platform
 * package for `arch`.
 */
export function shippedPackages (lock: Lock, arch: Arch, core: boolean): string[] {
  const app = lock.packages['']
  if (app === undefined) throw new Error('package-lock.json has no root package')
  const shipped = new Set<string>()
  const visit = (from: string, name: string, required: boolean): void => {
    const at = resolveIn(lock, from, name)
    if (at === undefined) {
      if (required) throw new Error(`package-lock.json has no ${name} for ${from === '' ? 'the app' : from}`)
      return
    }
    // Type declarations only (some packages list them as dependencies): nothing a running agent reads.
    if (shipped.has(at) || name.startsWith('@types/')) return
    shipped.add(at)
    const entry = lock.packages[at] as LockPackage
    for (const dep of Object.keys(entry.dependencies ?? {})) visit(at, dep, true)
    for (const dep of Object.keys(entry.peerDependencies ?? {})) {
      if (entry.peerDependenciesMeta?.[dep]?.optional !== true) visit(at, dep, false)
    }
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
      const target = resolveIn(lock, at, dep)
      if (target !== undefined && forPlatform(lock.packages[target] as LockPackage, arch)) visit(at, dep, true)
    }
  }
  for (const name of Object.keys(app.dependencies ?? {})) {
    if (!(core && HEAVY_PACKAGES.includes(name))) visit('', name, true)
  }
  return [...shipped].sort()
}

/** The package name of a lock path: node_modules/a/node_modules/@s/b is @s/b. */
export function packageName (lockPath: string): string {
  return lockPath.slice(lockPath.lastIndexOf('node_modules/') + 'node_modules/'.length)
}

const LICENSE = /^(licen[cs]e|copying|notice)/i
const DROPPED_DIRS = new Set(['test', 'tests', '__tests__', 'doc', 'docs', 'example', 'examples', 'benchmark', 'benchmarks', 'coverage', '.github', '.bin'])
/** Type declarations and TypeScript sources (Node does not strip types under node_modules), source maps, docs, native sources. */
const DROPPED_FILES = /\.([mc]?ts|tsx|map|md|markdown|cc|cpp|cxx|c|h|hh|hpp|gyp|gypi|o|a|tsbuildinfo)$/i
const DROPPED_NAMES = /^((readme|changelog|changes|history|contributing|code_of_conduct|security|authors)(\.(md|markdown|txt|rst))?|makefile|\.npmignore|\.eslintrc(\.\w+)?|\.prettierrc(\.\w+)?|\.editorconfig|\.travis\.yml|tsconfig(\.\w+)?\.json)$/i

/**
 * Whether file `file` (its path inside its package, with slashes) of a package ships for `arch`. `native` says the
 * package builds an addon (it has a binding.gyp): its sources, vendored dependencies and build folder stay out, and
 * it loads its prebuilt binary for the platform.
 */
export function shipsFile (file: string, arch: Arch, native: boolean): boolean {
  const parts = file.split('/')
  const name = parts[parts.length - 1] as string
  const [os, cpu] = arch.split('-') as [string, string]
  // Other platforms' binaries: onnxruntime-node's bin/napi-v6/<os>/<cpu>/, prebuilds/<os>-<cpu>[.node].
  const napi = /^bin\/napi-v\d+\/([^/]+)\/([^/]+)\//.exec(file)
  if (napi !== null && (napi[1] !== os || napi[2] !== cpu)) return false
  const prebuilt = parts.indexOf('prebuilds')
  if (prebuilt !== -1 && prebuilt < parts.length - 1 && (parts[prebuilt + 1] as string).replace(/\.node$/, '') !== arch) return false
  if (native && ['src', 'deps', 'build'].includes(parts[0] as string)) return false
  if (LICENSE.test(name)) return true
  if (parts.slice(0, -1).some((dir) => DROPPED_DIRS.has(dir))) return false
  return !DROPPED_FILES.test(name) && !DROPPED_NAMES.test(name)
}

/** The ELF e_machine of a file, or undefined when it is not an ELF file. */
export function elfMachine (file: string): number | undefined {
  const header = Buffer.alloc(20)
  const fd = openSync(file, 'r')
  try {
    if (readSync(fd, header, 0, 20, 0) < 20) return undefined
  } finally {
    closeSync(fd)
  }
  if (header.readUInt32BE(0) !== 0x7f454c46) return undefined
  // e_ident[EI_DATA] says the byte order of what follows: 1 little-endian, 2 big-endian.
  return header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18)
}

/** Every regular file under `dir`, as paths relative to it with slashes; `skip` leaves out folders by relative path. */
export function filesUnder (dir: string, skip: (relative: string) => boolean = () => false): string[] {
  const out: string[] = []
  const walk = (relative: string): void => {
    for (const entry of readdirSync(join(dir, relative), { withFileTypes: true })) {
      const path = relative === '' ? entry.name : `${relative}/${entry.name}`
      if (entry.isDirectory()) {
        if (!skip(path)) walk(path)
      } else {
        out.push(path)
      }
    }
  }
  walk('')
  return out.sort()
}

/** The files under `dir` whose ELF machine is not `arch`'s, with what they are built for. */
export function foreignBinaries (dir: string, arch: Arch): string[] {
  return filesUnder(dir).flatMap((file) => {
    if (lstatSync(join(dir, file)).isSymbolicLink()) return []
    const machine = elfMachine(join(dir, file))
    return machine === undefined || machine === ELF_MACHINE[arch] ? [] : [`${file} (e_machine ${machine})`]
  })
}

function logToStderr (message: string): void {
  process.stderr.write(`noodle release: ${message}\n`)
}

function copyFile (from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true })
  if (lstatSync(from).isSymbolicLink()) symlinkSync(readlinkSync(from), to)
  else copyFileSync(from, to)
}

/** The sha512 integrity string of a file, as package-lock.json writes it. */
function integrity (file: string): string {
  return `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`
}

/**
 * A package unpacked from the registry into the cache (`npm pack`, so npm's cache answers later runs offline),
 * checked against `expected` (the lock's integrity) when given. Returns the unpacked package folder.
 */
function fetchPackage (cache: string, spec: string, expected: string | undefined, log: (message: string) => void): string {
  const unpacked = join(cache, spec.replace(/[/@]/g, '_'))
  if (existsSync(join(unpacked, 'package/package.json'))) return join(unpacked, 'package')
  mkdirSync(cache, { recursive: true })
  log(`fetching ${spec}`)
  // From outside the repository, so npm reads no project settings there.
  const packed = JSON.parse(execFileSync('npm', ['pack', spec, '--json', '--pack-destination', cache], { cwd: tmpdir(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })) as Array<{ filename: string }>
  const tarball = join(cache, (packed[0] as { filename: string }).filename)
  if (expected !== undefined && integrity(tarball) !== expected) throw new Error(`${spec} does not match package-lock.json's integrity`)
  rmSync(`${unpacked}.partial`, { recursive: true, force: true })
  mkdirSync(`${unpacked}.partial`, { recursive: true })
  execFileSync('tar', ['-xzf', tarball, '-C', `${unpacked}.partial`, '--no-same-owner'])
  rmSync(tarball)
  rmSync(unpacked, { recursive: true, force: true })
  execFileSync('mv', [`${unpacked}.partial`, unpacked])
  return join(unpacked, 'package')
}

export interface ReleaseOptions {
  repo: string
  arch: Arch
  core: boolean
  out: string
  /** Where progress goes: stderr unless told. */
  log?: (message: string) => void
}

/** Lays the release out in `out`/stage/<name>/ (made afresh) and returns that folder. */
export function stageRelease ({ repo, arch, core, out, log = logToStderr }: ReleaseOptions): string {
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as Lock
  const version = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version
  const host = `${process.platform}-${process.arch}`
  const name = `noodle-${version}-${arch}${core ? '-core' : ''}`
  const cache = join(out, 'cache')
  const stage = join(out, 'stage', name)
  rmSync(stage, { recursive: true, force: true })
  mkdirSync(stage, { recursive: true })

  const app = appFiles(repo)
  const compiled = app.filter((file) => COMPILED.test(file))
  for (const file of app) if (!COMPILED.test(file)) copyFile(join(repo, file), join(stage, file))
  compileApp(repo, stage, compiled, log)

  const packages = shippedPackages(lock, arch, core)
  for (const at of packages) {
    const entry = lock.packages[at] as LockPackage
    const pkg = packageName(at)
    // A platform package for another machine is not in node_modules here: fetch it.
    const source = forPlatform(entry, arch) && arch !== host ? fetchPackage(cache, `${pkg}@${entry.version as string}`, entry.integrity, log) : join(repo, at)
    if (!existsSync(join(source, 'package.json'))) throw new Error(`${at} is not installed: run npm ci first`)
    const native = existsSync(join(source, 'binding.gyp'))
    for (const file of filesUnder(source, (dir) => dir === 'node_modules')) {
      if (shipsFile(file, arch, native)) copyFile(join(source, file), join(stage, at, file))
    }
  }
  // The pinned Node: npm installs the host's binary (the node package's install script fetches node-<os>-<cpu>),
  // so another architecture's comes from its own package.
  const nodeVersion = lock.packages['node_modules/node']?.version as string
  const nodeBinary = arch === host ? join(repo, 'node_modules/node/bin/node') : join(fetchPackage(cache, `node-${arch}@${nodeVersion}`, undefined, log), 'bin/node')
  rmSync(join(stage, 'node_modules/node/bin/node'), { force: true })
  copyFile(nodeBinary, join(stage, 'node_modules/node/bin/node'))
  writeFileSync(join(stage, 'RELEASE'), `version=${version}\narch=${arch}\nflavour=${core ? 'core' : 'full'}\n`)

  const foreign = foreignBinaries(stage, arch)
  if (foreign.length > 0) throw new Error(`files built for another machine than ${arch}:\n  ${foreign.join('\n  ')}`)
  log(`${name}: ${packages.length} packages, ${filesUnder(stage).length} files, ${megabytesUnder(stage)} MB unpacked`)
  return stage
}

/** The app's files, as paths in `repo`: those git knows (tracked, or new and not ignored), so no local scratch file ships. */
export function appFiles (repo: string): string[] {
  return execFileSync('git', ['-C', repo, 'ls-files', '-co', '--exclude-standard', '--', ...APP_PARTS], { encoding: 'utf8' })
    .split('\n').filter((file) => file !== '' && existsSync(join(repo, file)))
}

/** The app's sources that ship compiled to JavaScript (bin/noodle runs agent/main/noodle.js where it exists). */
export const COMPILED = /^(agent|common|identity|media|protocols|runtime)\/.*\.ts$/

/**
 * Compiles the app's TypeScript `files` (paths in `repo`) to JavaScript in `stage`, at the same paths with `.js`,
 * their imports of `.ts` rewritten to `.js`. An agent from a release then never loads Node's TypeScript stripper:
 * ~13 MB of an idle agent's memory (bench/memory.ts), and the stripping at each start without a compile cache.
 */
export function compileApp (repo: string, stage: string, files: string[], log: (message: string) => void): void {
  const work = mkdtempSync(join(tmpdir(), 'noodle-compile-'))
  try {
    const config = join(work, 'tsconfig.json')
    writeFileSync(config, JSON.stringify({
      extends: join(repo, 'tsconfig.json'),
      compilerOptions: { noEmit: false, outDir: join(work, 'out'), rootDir: repo, typeRoots: [join(repo, 'node_modules/@types')], rewriteRelativeImportExtensions: true, declaration: false, sourceMap: false },
      include: [],
      files: files.map((file) => join(repo, file))
    }))
    // TypeScript 7's compiler is a native program; its bin/tsc is a Node script that only finds and runs it, and
    // run under a test runner's module hooks it fails to load. tsc reports on stdout, where the tarball's path
    // alone must go.
    const native = join(repo, 'node_modules/@typescript', `typescript-${process.platform}-${process.arch}`, 'lib/tsc')
    const [command, args] = existsSync(native) ? [native, []] : [process.execPath, [join(repo, 'node_modules/typescript/bin/tsc')]]
    execFileSync(command, [...args, '-p', config], { stdio: ['ignore', 'pipe', 'inherit'] })
    for (const file of files) {
      const js = file.replace(/\.ts$/, '.js')
      copyFile(join(work, 'out', js), join(stage, js))
    }
    log(`compiled ${files.length} TypeScript files`)
  } catch (err) {
    const output = (err as { stdout?: Buffer }).stdout?.toString() ?? ''
    throw new Error(`the app does not compile:\n${output || (err as Error).message}`)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

/** The disk space the files under `dir` take, in MB (du's count). */
export function megabytesUnder (dir: string): number {
  return Number(execFileSync('du', ['-sm', dir], { encoding: 'utf8' }).split('\t')[0])
}

/** Stages the release and packs it into `out`/<name>.tar.gz; returns the tarball's path. */
export function buildRelease (options: ReleaseOptions): string {
  const stage = stageRelease(options)
  const name = basename(stage)
  const tarball = join(options.out, `${name}.tar.gz`)
  execFileSync('tar', ['-C', dirname(stage), '--owner=0', '--group=0', '--numeric-owner', '-czf', `${tarball}.partial`, name])
  execFileSync('mv', [`${tarball}.partial`, tarball])
  return tarball
}

function main (args: string[]): void {
  let core = false
  let out: string | undefined
  let arch: Arch | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    if (arg === '--core') core = true
    else if (arg === '--out') {
      // Not the next flag taken for a folder, nor the default silently used for a missing one.
      out = args[++i]
      if (out === undefined || out.startsWith('-')) throw new Error(`--out needs a folder: usage: scripts/release.sh ${ARCHES.join('|')} [--core] [--out DIR]`)
    }
    else if ((ARCHES as readonly string[]).includes(arg)) arch = arg as Arch
    else throw new Error(`unknown argument ${arg}: usage: scripts/release.sh ${ARCHES.join('|')} [--core] [--out DIR]`)
  }
  if (arch === undefined) throw new Error(`which platform? usage: scripts/release.sh ${ARCHES.join('|')} [--core] [--out DIR]`)
  const repo = fileURLToPath(new URL('..', import.meta.url))
  process.stdout.write(`${buildRelease({ repo, arch, core, out: resolve(out ?? join(repo, '.release')) })}\n`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2))
  } catch (err) {
    logToStderr((err as Error).message)
    process.exit(1)
  }
}
