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

module.exports = { WebRtcError, toWebRtcError, callSync, callAsync, invalid }
