/**
 * A Map that keeps at most `max` entries, in insertion order: adding one past the cap forgets the oldest. For
 * memories filled by what others send (ids, names, peers), which must not grow without bound. With `refresh`, a
 * `set` of a key already there moves it to the end (the map is then ordered by last `set`), so a flood of new
 * keys pushes out only stale ones.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  readonly max: number
  private readonly refresh: boolean

  constructor (max: number, options: { refresh?: boolean } = {}) {
    super()
    this.max = max
    this.refresh = options.refresh ?? false
  }

  override set (key: K, value: V): this {
    if (this.refresh) super.delete(key)
    super.set(key, value)
    for (const oldest of super.keys()) {
      if (this.size <= this.max) break
      super.delete(oldest)
    }
    return this
  }
}
