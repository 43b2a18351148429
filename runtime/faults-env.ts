import { z } from 'zod'
import { ConfigError } from '../common/errors.ts'
import { NAME_PATTERN } from '../common/text.ts'
import { MAX_PROVIDER_NAME, NO_FAULTS } from './faults.ts'
import { CANDIDATE_PROVIDERS } from './model-runtime.ts'
import type { Faults } from './faults.ts'

/**
 * Faults an operator (or a test) injects into inference, to rehearse what a box does when an accelerator fails
 * without having one to break, as etcd's failpoints do. `NOODLE_FAULTS` holds a JSON object:
 * - `simulate`: execution providers that run on the CPU under another name (`["gpu-sim"]`): a second provider
 *   to step down from or to, on a box that has only the CPU;
 * - `lostFile`: a file that lists providers, one a line, as `name` or `name: why`. A run on a listed provider
 *   fails with `why` (default "device lost"), and so does loading a model on it: the device is gone. Read on
 *   every run, so writing the file pulls the device out from under a running model.
 * - `slowMs`: milliseconds added to each run on a provider (`{"cpu": 20}`): a slower device, so that which
 *   provider a model measures fastest, and runs on, is known.
 * Faults only make things fail; they grant nothing.
 */
export const FaultsSchema = z.strictObject({
  simulate: z.array(z.string().max(MAX_PROVIDER_NAME).regex(NAME_PATTERN, 'must be a provider name: letters, digits, ".", "_" or "-"')
    .refine((name) => !(CANDIDATE_PROVIDERS as readonly string[]).includes(name), 'must not be a real provider\'s name (it would be tried twice)')).max(4).default([]),
  lostFile: z.string().min(1).max(4096).startsWith('/', 'must be an absolute path').optional(),
  slowMs: z.record(z.string().max(MAX_PROVIDER_NAME).regex(NAME_PATTERN, 'must be a provider name'), z.int().min(0).max(10_000)).optional()
})

/** The faults `NOODLE_FAULTS` asks for (none where it is unset), or a ConfigError naming what is wrong with it. */
export function faultsFromEnv (env: NodeJS.ProcessEnv): Faults {
  const text = env.NOODLE_FAULTS
  if (text === undefined || text === '') return NO_FAULTS
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('NOODLE_FAULTS', `is not JSON: ${(err as Error).message}`)
  }
  const parsed = FaultsSchema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new ConfigError(`NOODLE_FAULTS${issue?.path.map((p) => `.${String(p)}`).join('') ?? ''}`, issue?.message ?? 'invalid')
  }
  return parsed.data
}


// Checked against the interface the workers read.
export const _faultsShape: (f: z.infer<typeof FaultsSchema>) => Faults = (f) => f
