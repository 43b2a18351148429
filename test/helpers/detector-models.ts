export * from '../../scripts/detector-models.ts'
