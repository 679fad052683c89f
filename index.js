'use strict'
const { WebRtcTransport, Session } = require('./js/transport')
const { SignalingServer, issueSignalingToken } = require('./js/server')
const { Peer } = require('./js/peer')
const { DataChannel } = require('./js/channel')
const { WebRtcError } = require('./js/errors')
const { presets } = require('./js/presets')
const { Pipeline } = require('./js/pipeline')

module.exports = { WebRtcTransport, SignalingServer, issueSignalingToken, Peer, DataChannel, WebRtcError, presets, Pipeline, Session }
