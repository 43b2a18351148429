/**
 * The agent's own counters, by the name each is exposed under in `GET /metrics`: what it counts (its HELP line)
 * and its labels. A component counts with `metrics.inc(name, labels)`; the name must be declared here, so that
 * every family on /metrics says what it is. The names are the constants beside the code that counts
 * (REJECTED_METRIC, API_REFUSED_METRIC, …); test/agent/metrics checks that each is declared.
 */
export const COUNTERS: Readonly<Record<string, { help: string, labelNames: readonly string[] }>> = {
  noodle_gossip_rejected_total: {
    help: 'Messages from peers that our validators refused, by reason and topic (or stream protocol).',
    labelNames: ['reason', 'topic']
  },
  noodle_decisions_received_total: {
    help: 'Placement decisions for this node, by outcome: applied, rejected, stale.',
    labelNames: ['outcome']
  },
  noodle_placement_evaluations_total: {
    help: 'Placement passes this node ran as coordinator.',
    labelNames: []
  },
  noodle_dial_targets_dropped_total: {
    help: 'Peers to dial and addresses dropped, by reason: targets and addrs (the caps), expired (hearsay too old).',
    labelNames: ['reason']
  },
  noodle_inference_workers_lost_total: {
    help: 'Inference workers replaced, by reason: died (exited, crashed) or wedged (a call timed out).',
    labelNames: ['reason']
  },
  noodle_inference_models_refused_total: {
    help: 'Models refused after leaving too many wedged workers behind.',
    labelNames: []
  },
  noodle_api_refused_total: {
    help: 'Control API requests refused, by reason (the error code without ERR_, lower case).',
    labelNames: ['reason']
  },
  noodle_api_failed_total: {
    help: 'Control API requests the agent failed to answer (5xx), by reason: internal, no_coordinator.',
    labelNames: ['reason']
  },
  noodle_live_dropped_total: {
    help: 'Clients of the web page\'s live feed dropped, by reason: slow, oversized, flood, protocol, unresponsive, session.',
    labelNames: ['reason']
  },
  noodle_membership_probes_total: {
    help: 'Pings this node sent to members it had not heard from, by outcome: answered, timeout, knocked (only its box answered), refused, inconclusive (our own loop stalled).',
    labelNames: ['outcome']
  },
  noodle_mqtt_redelivered_total: {
    help: 'QoS 1 messages the MQTT broker sent again (DUP): each may be stored twice (at-least-once).',
    labelNames: []
  },
  noodle_mqtt_broker_refused_total: {
    help: 'What the embedded MQTT broker refused, by reason (credentials, clientId, publish, subscribe, ...).',
    labelNames: ['reason']
  }
}
