export { bareNode } from '../../scripts/bare-node.ts'
