export * from '../../scripts/mosquitto.ts'
