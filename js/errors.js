'use strict'
// WebRtcError: every rejection and throw of the package, with a stable `code`.

class WebRtcError extends Error {
  constructor(code, message) {
    super(message)
    this.name = 'WebRtcError'
    this.code = code
  }
}

const CODED = /^(ERR_[A-Z_]+): ([\s\S]*)$/

// Native errors arrive as "ERR_CODE: message"; anything else is an internal error.
function toWebRtcError(e) {
  if (e instanceof WebRtcError) return e
  const msg = e && typeof e.message === 'string' ? e.message : String(e)
  const m = CODED.exec(msg)
  return m ? new WebRtcError(m[1], m[2]) : new WebRtcError('ERR_INTERNAL', msg)
}

function callSync(fn) {
  try {
    return fn()
  } catch (e) {
    throw toWebRtcError(e)
  }
}

async function callAsync(fn) {
  try {
    return await fn()
  } catch (e) {
    throw toWebRtcError(e)
  }
}

function invalid(code, message) {
  return new WebRtcError(code, message)
}

// JSON text of `value` for the native side, or a WebRtcError with `code`: for a cycle, a BigInt
// or a toJSON that throws, and (with `finite`) for NaN and ±Infinity, which JSON would turn into
// null, i.e. into the option's default. `what` names the value in the message ('options').
function toJson(value, what, code, { finite = true } = {}) {
  const paths = new WeakMap()
  try {
    return JSON.stringify(value, function (key, v) {
      const parent = paths.get(this)
      const path = parent === undefined ? what : Array.isArray(this) ? `${parent}[${key}]` : `${parent}.${key}`
      if (finite && typeof v === 'number' && !Number.isFinite(v)) {
        throw invalid(code, `${path} must be a finite number, got ${v}`)
      }
      if (v !== null && typeof v === 'object') paths.set(v, path)
      return v
    })
  } catch (e) {
    if (e instanceof WebRtcError) throw e
    throw invalid(code, `${what} cannot be serialized to JSON: ${e && e.message ? e.message : String(e)}`)
  }
}

module.exports = { WebRtcError, toWebRtcError, callSync, callAsync, invalid, toJson }
