import { request } from 'node:http'
import { AgentHangupError, AgentTimeoutError, AgentUnreachableError, ApiError } from './errors.ts'

/** GET a control API path over the agent's Unix socket and parse the JSON answer. */
export function apiGet<T> (socketPath: string, path: string, timeoutMs = 5_000): Promise<T> {
  return apiRequest<T>(socketPath, 'GET', path, timeoutMs)
}

/** Calls the control API over the agent's Unix socket and parses the JSON answer; errors become ApiError. */
export async function apiRequest<T> (socketPath: string, method: 'GET' | 'POST', path: string, timeoutMs = 5_000, body?: unknown): Promise<T> {
  const { status, text } = await call(socketPath, method, path, timeoutMs, body === undefined ? undefined : JSON.stringify(body))
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new ApiError(status, 'ERR_BAD_RESPONSE', `agent answered ${path} with something other than JSON`)
  }
  if (status >= 400) {
    const error = (parsed as { error?: { code?: string, message?: string } }).error
    throw new ApiError(status, error?.code ?? 'ERR_API', error?.message ?? `HTTP ${status}`)
  }
  return parsed as T
}

/** GET a path whose answer is text, not JSON (`/metrics`). */
export async function apiText (socketPath: string, path: string, timeoutMs = 5_000): Promise<string> {
  const { status, text } = await call(socketPath, 'GET', path, timeoutMs)
  if (status >= 400) throw new ApiError(status, 'ERR_API', `HTTP ${status}: ${text.slice(0, 200)}`)
  return text
}

function call (socketPath: string, method: 'GET' | 'POST', path: string, timeoutMs: number, payload?: string): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    // Every POST says it is JSON, with or without a body: the agent refuses state changes that do not (415).
    const headers = method === 'GET' ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload ?? '') }
    const req = request({ socketPath, path, method, timeout: timeoutMs, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => { resolve({ status: res.statusCode ?? 500, text: Buffer.concat(chunks).toString('utf8') }) })
    })
    // Connected, then no answer in time: the agent is there but busy or wedged, which is not "no agent".
    req.on('timeout', () => { req.destroy(new AgentTimeoutError(`${method} ${path}`, timeoutMs)) })
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof AgentTimeoutError) reject(err)
      else if (['ENOENT', 'ECONNREFUSED', 'ENOTSOCK'].includes(err.code ?? '')) reject(new AgentUnreachableError(socketPath, { cause: err }))
      else if (['ECONNRESET', 'EPIPE'].includes(err.code ?? '')) reject(new AgentHangupError(`${method} ${path}`, { cause: err }))
      else reject(err)
    })
    req.end(payload)
  })
}
