import { nodeHttp } from '../../common/http.ts'
import { AgentHangupError, AgentTimeoutError, AgentUnreachableError, ApiError } from '../../common/errors.ts'

/** GET a control API path over the agent's Unix socket and parse the JSON answer. */
export function apiGet<T> (socketPath: string, path: string, timeoutMs = 5_000): Promise<T> {
  return apiRequest<T>(socketPath, 'GET', path, timeoutMs)
}

/** The most the CLI reads of one answer: every answer is a page of JSON or metrics, far less than this. */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024

/** An error answer's `{ "error": { "code", "message" } }`, if it has that shape (an agent's answer is not trusted). */
function errorOf (parsed: unknown): { code: string, message: string } | undefined {
  const error = typeof parsed === 'object' && parsed !== null ? (parsed as { error?: unknown }).error : undefined
  if (typeof error !== 'object' || error === null) return undefined
  const { code, message } = error as { code?: unknown, message?: unknown }
  return typeof code === 'string' && typeof message === 'string' ? { code, message } : undefined
}

/**
 * Calls the control API over the agent's Unix socket and parses the JSON answer; errors become ApiError. An error
 * answer not of the usual shape is `HTTP <status>`. A success is any JSON: the caller judges its shape (cli.ts's
 * tables turn one they cannot read into ERR_BAD_RESPONSE).
 */
export async function apiRequest<T> (socketPath: string, method: 'GET' | 'POST', path: string, timeoutMs = 5_000, body?: unknown): Promise<T> {
  const { status, text } = await call(socketPath, method, path, timeoutMs, body === undefined ? undefined : JSON.stringify(body))
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new ApiError(status, 'ERR_BAD_RESPONSE', `agent answered ${path} with something other than JSON`)
  }
  if (status >= 400) {
    const error = errorOf(parsed)
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

/**
 * One request; the whole answer must come within `timeoutMs` (an agent that trickles its answer is cut off, not
 * waited on for good) and be at most MAX_ANSWER_BYTES.
 */
function call (socketPath: string, method: 'GET' | 'POST', path: string, timeoutMs: number, payload?: string): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    // Every POST says it is JSON, with or without a body: the agent refuses state changes that do not (415).
    const headers = method === 'GET' ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload ?? '') }
    // Settled with our reason first: what destroying the request then reports (an abort) comes too late to count.
    const fail = (err: Error): void => {
      clearTimeout(deadline)
      reject(err)
      req.destroy()
    }
    const req = nodeHttp().request({ socketPath, path, method, timeout: timeoutMs, headers }, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > MAX_ANSWER_BYTES) fail(new ApiError(res.statusCode ?? 0, 'ERR_BAD_RESPONSE', `agent answered ${path} with more than ${MAX_ANSWER_BYTES} bytes`))
        else chunks.push(c)
      })
      res.on('error', reject)
      res.on('end', () => {
        clearTimeout(deadline)
        resolve({ status: res.statusCode ?? 500, text: Buffer.concat(chunks).toString('utf8') })
      })
    })
    // Connected, then no answer in time: the agent is there but busy or wedged, which is not "no agent". The
    // socket's timeout is idle time only: the deadline is for the whole answer.
    const timedOut = (): void => { fail(new AgentTimeoutError(`${method} ${path}`, timeoutMs)) }
    const deadline = setTimeout(timedOut, timeoutMs)
    req.on('timeout', timedOut)
    req.on('close', () => { clearTimeout(deadline) })
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(deadline)
      if (['ENOENT', 'ECONNREFUSED', 'ENOTSOCK'].includes(err.code ?? '')) reject(new AgentUnreachableError(socketPath, { cause: err }))
      else if (['ECONNRESET', 'EPIPE'].includes(err.code ?? '')) reject(new AgentHangupError(`${method} ${path}`, { cause: err }))
      else reject(err)
    })
    req.end(payload)
  })
}
