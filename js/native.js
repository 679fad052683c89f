'use strict'
// Loads the compiled addon through the loader `napi build` generates (native.js at the root), or
// the .node file REMOTEMEDIA_WEBRTC_NATIVE names (e.g. a build with other cargo features, such as
// `h264`, kept next to the default one; CI tests it that way).
const path = require('node:path')
let binding
const override = process.env.REMOTEMEDIA_WEBRTC_NATIVE
try {
  binding = require(override ? path.resolve(override) : path.join(__dirname, '..', 'native.js'))
} catch (e) {
  const err = new Error(
    (override
      ? `remotemedia-webrtc: cannot load the addon REMOTEMEDIA_WEBRTC_NATIVE names (${override}). `
      : 'remotemedia-webrtc: the native addon is not built. Run `npm install` (or `npm run build`). ') +
      'Cause: ' + e.message,
  )
  err.code = 'ERR_NOT_BUILT'
  throw err
}
module.exports = binding
