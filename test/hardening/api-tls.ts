import { execFileSync } from 'node:child_process'
import { request } from 'node:https'
import { join } from 'node:path'

/** A self-signed certificate for 127.0.0.1, made for a test of the HTTPS listener. */
export function certificate (dir: string): { certFile: string, keyFile: string } {
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '1', '-subj', '/CN=noodle-test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  return { certFile, keyFile }
}

/** One JSON request over HTTPS (trusting `ca`): the status and the parsed body. */
export function httpsJson (port: number, ca: Buffer, method: string, path: string, token?: string, body?: unknown): Promise<{ status: number, body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? '' : JSON.stringify(body)
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) }
    const req = request({ host: '127.0.0.1', port, method, path, ca, headers }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }) })
    })
    req.on('error', reject)
    req.end(payload)
  })
}
