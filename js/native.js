'use strict'
// Loads the compiled addon through the loader `napi build` generates (native.js at the root).
const path = require('node:path')
let binding
try {
  binding = require(path.join(__dirname, '..', 'native.js'))
} catch (e) {
  const err = new Error(
    'remotemedia-webrtc: the native addon is not built. Run `npm install` (or `npm run build`). ' +
      'Cause: ' + e.message,
  )
  err.code = 'ERR_NOT_BUILT'
  throw err
}
module.exports = binding
