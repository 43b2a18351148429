/**
 * Every error Noodle raises on purpose is a NoodleError with a stable `code`, so callers (the CLI, the API,
 * tests) branch on the code rather than on message text.
 */
export class NoodleError extends Error {
  readonly code: string

  constructor (code: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** Bad configuration: `key` names the offending setting as the operator wrote it (file key, flag or env var). */
export class ConfigError extends NoodleError {
  readonly key: string

  constructor (key: string, message: string) {
    super('ERR_CONFIG', `${key}: ${message}`)
    this.key = key
  }
}

/** Bad command-line usage (unknown command or flag). */
export class UsageError extends NoodleError {
  constructor (message: string) {
    super('ERR_USAGE', message)
  }
}

/** The identity or swarm key on disk is missing, unreadable or malformed. */
export class IdentityError extends NoodleError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_IDENTITY', message, options)
  }
}

/** The CLI could not reach a running agent. */
export class AgentUnreachableError extends NoodleError {
  constructor (socketPath: string, options?: ErrorOptions) {
    super('ERR_AGENT_UNREACHABLE', `no agent is running at ${socketPath}`, options)
  }
}

/** The agent took the CLI's request but did not answer in time (it may be busy, wedged, or the work is long). */
export class AgentTimeoutError extends NoodleError {
  constructor (what: string, timeoutMs: number, options?: ErrorOptions) {
    super('ERR_AGENT_TIMEOUT', `the agent did not answer ${what} within ${timeoutMs / 1000} s`, options)
  }
}

/** The agent closed the CLI's connection without answering (it stopped, or refused the request outright). */
export class AgentHangupError extends NoodleError {
  constructor (what: string, options?: ErrorOptions) {
    super('ERR_AGENT_HANGUP', `the agent closed the connection without answering ${what}`, options)
  }
}

/** The control API refused a request before any route ran (its target, size or type); `httpStatus` is the answer. */
export class RequestRefusedError extends NoodleError {
  readonly httpStatus: number

  constructor (httpStatus: number, code: string, message: string) {
    super(code, message)
    this.httpStatus = httpStatus
  }
}

/** A model's run failed inside onnxruntime (its message is onnxruntime's, or an injected fault's). */
export class InferenceError extends NoodleError {
  constructor (message: string) {
    super('ERR_INFERENCE', message)
  }
}

/** A known path asked with a method it does not take: 405, with the methods it does take (the Allow header). */
export class MethodNotAllowedError extends RequestRefusedError {
  readonly allow: string

  constructor (method: string, path: string, allow: string[]) {
    super(405, 'ERR_METHOD', `${method} is not allowed on ${path}`)
    this.allow = allow.join(', ')
  }
}

/** The agent answered the CLI with an error status. */
export class ApiError extends NoodleError {
  readonly status: number

  constructor (status: number, code: string, message: string) {
    super(code, message)
    this.status = status
  }
}

/** The mesh has no coordinator right now (an election is under way), or it could not be reached. */
export class NoCoordinatorError extends NoodleError {
  /** The control API answers 503: try again in a moment. */
  readonly httpStatus = 503

  constructor (message: string, options?: ErrorOptions) {
    super('ERR_NO_COORDINATOR', message, options)
  }
}

/** A model file that is not a usable ONNX model (corrupt, truncated, not ONNX, unsupported opset). */
export class ModelError extends NoodleError {
  /** The control API answers 400: the file given is at fault. */
  readonly httpStatus = 400

  constructor (message: string, options?: ErrorOptions) {
    super('ERR_MODEL', message, options)
  }
}

/** No model with that id is registered here. */
export class UnknownModelError extends NoodleError {
  readonly httpStatus = 404

  constructor (id: string) {
    super('ERR_UNKNOWN_MODEL', `no model ${id} is registered on this node (see noodle models)`)
  }
}

/**
 * An inference worker died or did not answer in time: the call was not done (the worker is replaced; try again).
 * Also the answer to every run of a model that left too many workers stuck, until it is compiled again.
 */
export class WorkerError extends NoodleError {
  readonly httpStatus = 503

  constructor (message: string) {
    super('ERR_WORKER', message)
  }
}

/**
 * A camera's detector cannot be set up for its model (a signature no decoder knows, a setting that contradicts
 * it), or a frame's outputs do not have the shape the decoder was set up for.
 */
export class DetectorError extends NoodleError {
  constructor (message: string) {
    super('ERR_DETECTOR', message)
  }
}

/** A peer's answer to a model fetch was refused before it could be kept; `reason` is its refusal counter's label. */
export class FetchRefusedError<Reason extends string = string> extends NoodleError {
  readonly reason: Reason

  constructor (reason: Reason, message: string) {
    super('ERR_FETCH_REFUSED', message)
    this.reason = reason
  }
}

/** Something that runs one at a time is running already: 409, try again when it is done. */
export class BusyError extends NoodleError {
  readonly httpStatus = 409

  constructor (message: string) {
    super('ERR_BUSY', message)
  }
}

/** A request to the control API with a body that is not what the endpoint takes; `field` names the culprit. */
export class BadRequestError extends NoodleError {
  readonly httpStatus = 400
  readonly field: string | undefined

  constructor (message: string, field?: string) {
    super('ERR_BAD_REQUEST', field === undefined ? message : `${field}: ${message}`)
    this.field = field
  }
}

/** A camera's credentials would go to a host other than the one they are for (cameraCredentialsFile). */
export class CameraCredentialsError extends NoodleError {
  constructor (message: string) {
    super('ERR_CAMERA_CREDENTIALS', message)
  }
}

/** A gossip topic read or validated with a codec other than the one already registered for it (a wiring bug). */
export class TopicCodecError extends NoodleError {
  constructor (topic: string) {
    super('ERR_TOPIC_CODEC', `topic ${topic} already has another codec: one topic, one codec`)
  }
}

/**
 * Camera or model work needs a native module this install does not have: a --core release ships without
 * onnxruntime-node and node-av (runtime/loader.ts). 501 at the API: this box cannot do it at all.
 */
export class ModuleUnavailableError extends NoodleError {
  readonly httpStatus = 501
  readonly module: string

  constructor (module: string, what: string) {
    super('ERR_MODULE_UNAVAILABLE', `${what} needs ${module}, which is not installed here (a core release has no camera or model support): install the full release`)
    this.module = module
  }
}
