import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { ConfigError } from '../agent/errors.ts'
import { issueKey } from '../protocols/codec.ts'
import { nameText } from '../protocols/text.ts'
import { MAX_CREDENTIAL_CAMERAS } from '../protocols/work.ts'

export interface CameraCredential {
  username: string
  password: string
}

/** Camera id → its credentials, from this box's own file: they never travel in a beacon or a decision. */
export type CameraCredentials = ReadonlyMap<string, CameraCredential>

const KEY = 'cameraCredentialsFile'

const CredentialsFileSchema = z.record(nameText, z.strictObject({
  username: z.string().min(1).max(256),
  password: z.string().max(1024)
})).refine((r) => Object.keys(r).length <= MAX_CREDENTIAL_CAMERAS, `must name at most ${MAX_CREDENTIAL_CAMERAS} cameras`)

/**
 * Reads `cameraCredentialsFile` (`{ "<camera id>": { "username": "…", "password": "…" } }`) once, at start.
 * No file: no credentials. Anything wrong is a ConfigError naming the setting and the camera key at fault.
 */
export function readCameraCredentials (file: string | undefined): CameraCredentials {
  if (file === undefined) return new Map()
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'))
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

/** The URL to open: `source` with the camera's credentials put in (a source that is not a URL is left as it is). */
export function withCredentials (source: string, credential: CameraCredential | undefined): string {
  if (credential === undefined || source.startsWith('lavfi:')) return source
  try {
    const url = new URL(source)
    url.username = encodeURIComponent(credential.username)
    url.password = encodeURIComponent(credential.password)
    return url.toString()
  } catch {
    return source
  }
}
