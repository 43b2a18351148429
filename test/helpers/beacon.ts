export { sampleBeacon } from '../../scripts/beacon.ts'
