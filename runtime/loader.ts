import { ModuleUnavailableError } from '../common/errors.ts'
import type { WorkItem } from '../protocols/work.ts'

/**
 * The native modules that only camera and model work needs, and the large part of an agent's memory when loaded
 * (onnxruntime: tens of MB per inference thread; node-av: FFmpeg's libraries). Neither is ever imported by the
 * agent's own thread: runtime/inference-worker.ts and media/decode-worker.ts import them in the threads that the
 * inference pool and a camera's frame source start when work lands. These are the names those threads import.
 */
export const HEAVY_MODULES = { inference: 'onnxruntime-node', media: 'node-av/api' } as const

/** What a heavy module is for: running models (inference), decoding cameras (media). */
export type HeavyWork = keyof typeof HEAVY_MODULES
export type HeavyAvailability = Record<HeavyWork, boolean>

/**
 * The one place that says whether the heavy modules are installed at all: a core release (sensor boxes: mesh,
 * MQTT ingest, API, CLI) ships without them. It finds a module by resolving its name, which reads package.json
 * files and loads nothing; the answer is kept, since installs do not change under a running agent. A part that
 * would start a thread importing one asks `require` first, so the box gives a named error (ModuleUnavailableError)
 * instead of a thread that dies on import and is restarted again and again.
 */
export class HeavyModules {
  private readonly names: Record<HeavyWork, string>
  private readonly resolve: (specifier: string) => string
  private found: HeavyAvailability | undefined

  constructor (components: {
    /** Other names for the modules (tests name one that does not exist, as a core release lacks them). */
    names?: Partial<Record<HeavyWork, string>>
    resolve?: (specifier: string) => string
  } = {}) {
    this.names = { ...HEAVY_MODULES, ...components.names }
    this.resolve = components.resolve ?? ((specifier) => import.meta.resolve(specifier))
  }

  /** Whether each module is installed here: with neither, the box takes no camera or model work. */
  available (): HeavyAvailability {
    this.found ??= { inference: this.installed(this.names.inference), media: this.installed(this.names.media) }
    return { ...this.found }
  }

  /** Throws ModuleUnavailableError unless the module for `work` is installed; `what` says what needs it. */
  require (work: HeavyWork, what: string): void {
    if (!this.available()[work]) throw new ModuleUnavailableError(this.names[work], what)
  }

  /** Throws ModuleUnavailableError for the first work item here that needs a module this install lacks. */
  requireFor (items: readonly WorkItem[]): void {
    for (const item of items) {
      if (item.kind === 'camera') this.require('media', `camera ${item.id}`)
      if (item.model !== undefined) this.require('inference', `the model of work ${item.id}`)
    }
  }

  private installed (name: string): boolean {
    try {
      this.resolve(name)
      return true
    } catch {
      return false
    }
  }
}
