/** A part of the agent with a start and a stop; either may be async. The composition root starts them in order. */
export interface Component {
  start?: () => void | Promise<void>
  stop?: () => void | Promise<void>
}
