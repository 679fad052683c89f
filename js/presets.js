'use strict'
// The seed's three presets; any option given overrides the preset's value.
const presets = {
  lowLatency: (options = {}) => ({ ...options, preset: 'lowLatency' }),
  highQuality: (options = {}) => ({ ...options, preset: 'highQuality' }),
  mobileNetwork: (options = {}) => ({ ...options, preset: 'mobileNetwork' }),
}
module.exports = { presets }
