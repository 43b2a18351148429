import { request } from 'node:http'
import { AgentUnreachableError, ApiError } from './errors.ts'

/** GET a control API path over the agent's Unix socket and parse the JSON answer. */
export function apiGet<T> (socketPath: string, path: string, timeoutMs = 5_000): Promise<T> {
  return apiRequest<T>(socketPath, 'GET', path, timeoutMs)
}

/** Calls the control API over the agent's Unix socket and parses the JSON answer; errors become ApiError. */
export function apiRequest<T> (socketPath: string, method: 'GET' | 'POST', path: string, timeoutMs = 5_000, body?: unknown): Promise<T> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
    const req = request({ socketPath, path, method, timeout: timeoutMs, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let body: unknown
        try {
          body = JSON.parse(text)
        } catch {
          reject(new ApiError(res.statusCode ?? 0, 'ERR_BAD_RESPONSE', `agent answered ${path} with something other than JSON`))
          return
        }
        if ((res.statusCode ?? 500) >= 400) {
          const error = (body as { error?: { code?: string, message?: string } }).error
          reject(new ApiError(res.statusCode ?? 500, error?.code ?? 'ERR_API', error?.message ?? `HTTP ${res.statusCode ?? '?'}`))
          return
        }
        resolve(body as T)
      })
    })
    req.on('timeout', () => { req.destroy(new AgentUnreachableError(socketPath)) })
    req.on('error', (err: NodeJS.ErrnoException) => {
      reject(err instanceof AgentUnreachableError || ['ENOENT', 'ECONNREFUSED', 'ENOTSOCK'].includes(err.code ?? '')
        ? new AgentUnreachableError(socketPath, { cause: err })
        : err)
    })
    req.end(payload)
  })
}
