/**
 * The URL of module `name` beside the module at `base` (its `import.meta.url`), with that module's extension:
 * `.ts` when the agent runs from its sources, `.js` in a release, whose sources are compiled (scripts/release.ts).
 * For what is named by URL rather than imported, such as a worker's script.
 */
export function siblingModule (base: string, name: string): URL {
  return new URL(`./${name}${new URL(base).pathname.endsWith('.js') ? '.js' : '.ts'}`, base)
}
