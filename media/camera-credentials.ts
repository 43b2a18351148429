import { readSmallFile } from '../common/files.ts'
import { z } from 'zod'
import { CameraCredentialsError, ConfigError } from '../common/errors.ts'
import { issueKey } from '../protocols/codec.ts'
import { canonicalHost, portOf } from '../protocols/hosts.ts'
import { nameText } from '../common/text.ts'
import { MAX_CREDENTIAL_CAMERAS } from '../protocols/work.ts'
import type { WorkItem } from '../protocols/work.ts'

/** A camera's credentials and where they may be sent: its host, and its port when given (else any port there). */
export interface CameraCredential {
  host: string
  port?: number | undefined
  username: string
  password: string
}

/** Camera id → its credentials, from this box's own file: they never travel in a beacon or a decision. */
export type CameraCredentials = ReadonlyMap<string, CameraCredential>

const KEY = 'cameraCredentialsFile'

const CredentialsFileSchema = z.record(nameText, z.strictObject({
  host: z.string().regex(/^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$/, 'must be the camera\'s host name or address (IPv6 in brackets)'),
  port: z.int().min(1).max(65_535).optional(),
  username: z.string().min(1).max(256),
  password: z.string().max(1024)
})).refine((r) => Object.keys(r).length <= MAX_CREDENTIAL_CAMERAS, `must name at most ${MAX_CREDENTIAL_CAMERAS} cameras`)

/**
 * Reads `cameraCredentialsFile` (`{ "<camera id>": { "host": "192.0.2.10", "port": 554, "username": "…",
 * "password": "…" } }`) once, at start. No file: no credentials. Anything wrong is a ConfigError naming the
 * setting and the camera key at fault.
 */
export function readCameraCredentials (file: string | undefined): CameraCredentials {
  if (file === undefined) return new Map()
  let parsed: unknown
  try {
    parsed = JSON.parse(readSmallFile(file).toString('utf8'))
  } catch (err) {
    throw new ConfigError(KEY, `cannot read ${file} as JSON: ${(err as Error).message}`)
  }
  const result = CredentialsFileSchema.safeParse(parsed)
  if (!result.success) {
    const issue = result.error.issues[0] as z.core.$ZodIssue
    const key = issueKey(issue)
    throw new ConfigError(KEY, `${file}: ${key === '' ? '' : `${key}: `}${issue.message}`)
  }
  return new Map(Object.entries(result.data))
}

/**
 * Why `credential` may not be put into `source`, or null when it may (or when nothing would be sent: no
 * credentials, a generator, a file or device). Camera ids are names anyone in the mesh can use, so the
 * credentials go only to the host (and port) they are for; a source with `@`, `\` or `#` is refused outright,
 * since URL parsers (ours, FFmpeg's) may disagree on which host it names.
 */
export function credentialRefusal (source: string, credential: CameraCredential | undefined): string | null {
  if (credential === undefined) return null
  let url: URL
  try {
    url = new URL(source)
  } catch {
    return null
  }
  if (url.protocol === 'lavfi:') return null
  const allowed = `${credential.host}${credential.port === undefined ? '' : `:${credential.port}`}`
  if (canonicalHost(url.hostname) !== canonicalHost(credential.host) || (credential.port !== undefined && portOf(url) !== credential.port)) {
    return `its credentials are for ${allowed}, not for ${url.protocol}//${url.host}`
  }
  if (/[@\\#]/.test(source)) return 'a source with "@", "\\" or "#" could name another host than the one its credentials are for'
  return null
}

/**
 * The URL to open: `source` with the camera's credentials put in. A source they are not for is refused (thrown),
 * never opened with them; one that takes none (a generator, a file, a device) is left as it is.
 */
export function withCredentials (source: string, credential: CameraCredential | undefined): string {
  if (credential === undefined || source.startsWith('lavfi:')) return source
  const refusal = credentialRefusal(source, credential)
  if (refusal !== null) throw new CameraCredentialsError(refusal)
  try {
    const url = new URL(source)
    url.username = encodeURIComponent(credential.username)
    url.password = encodeURIComponent(credential.password)
    return url.toString()
  } catch {
    return source
  }
}

/** The box's own cameras must name the hosts their credentials are for: an error at start, naming the camera. */
export function checkOwnCameras (credentials: CameraCredentials, work: readonly WorkItem[], file: string | undefined): void {
  for (const item of work) {
    const problem = item.source === undefined ? null : credentialRefusal(item.source, credentials.get(item.id))
    if (problem !== null) throw new ConfigError(KEY, `${file ?? ''}: ${item.id}: ${problem} (the source of work ${item.id})`)
  }
}
