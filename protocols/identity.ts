import { z } from 'zod'

export const ROLES = ['viewer', 'operator', 'admin'] as const
export type OperatorRole = typeof ROLES[number]

/**
 * `POST /api/v1/identity/register`, as the system design's registration flow has it. Each rule names its field
 * when it fails; the password's strength is checked after the schema (identity/password.ts), as it depends on
 * the username and email.
 */
export const RegisterRequestSchema = z.strictObject({
  username: z.string().regex(/^[A-Za-z][A-Za-z0-9._-]{2,31}$/, 'must be 3–32 letters, digits, ".", "_" or "-", starting with a letter'),
  email: z.email('must be an email address').max(254),
  password: z.string().min(1, 'is required'),
  profile: z.strictObject({
    first_name: z.string().trim().min(1, 'is required').max(64),
    last_name: z.string().trim().min(1, 'is required').max(64),
    phone: z.string().regex(/^\+?[0-9][0-9 ()-]{5,22}$/, 'must be a phone number, e.g. +44 20 7946 0958').optional()
  }),
  /** Only over the local socket (`noodle user add --role`): over HTTPS anything but viewer is refused (403). */
  role: z.enum(ROLES).default('viewer')
})

export type RegisterRequest = z.infer<typeof RegisterRequestSchema>

export const RemoveOperatorSchema = z.strictObject({ username: z.string().min(1).max(64) })

export const LoginRequestSchema = z.strictObject({
  username: z.string().min(1, 'is required').max(64),
  password: z.string().min(1, 'is required').max(1024),
  /** For the web page: the token goes in an HttpOnly cookie, never in the answer (script cannot read it). */
  session: z.boolean().optional()
})

/** An operator account as the API shows it: never its password hash. */
export interface OperatorView {
  user_id: string
  username: string
  email: string
  role: OperatorRole
  status: 'active'
  created_at: string
}
