/**
 * Node's http module, taken as the CommonJS object it is. An ESM `import … from 'node:http'` builds a namespace of
 * every export, which reads http's lazy WebSocket, CloseEvent and MessageEvent getters and so loads undici (Node's
 * fetch): ~12 MB of RSS in every agent and CLI process for code neither uses (bench/memory.ts). Types still come
 * from `import type`.
 */
export function nodeHttp (): typeof import('node:http') {
  return process.getBuiltinModule('node:http')
}
