// A peer of another WebRTC stack (werift, @roamhq/wrtc, node-datachannel's W3C polyfill: anything
// with a W3C-style RTCPeerConnection) on our JSON-RPC signaling protocol, written against
// docs/signaling-protocol.md and not against our client. It announces, answers every offer
// (the first and renegotiations), trickles candidates within the offer/answer pair, and can
// offer itself (connect, renegotiate). The interop matrix (one file per peer) drives it.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const WebSocket = require('ws')

export class SignalingPeer {
  // url: the signaling server's ws:// URL; RTCPeerConnection: the stack's constructor;
  // config: passed to it; capabilities: announced; outgoingSdp(type, sdp) → sdp: rewrites each
  // description as it is sent (for a stack that breaks a rule the other side relies on).
  constructor({ url, peerId, RTCPeerConnection, config = {}, capabilities = ['audio', 'video', 'data'], outgoingSdp = (type, sdp) => sdp }) {
    this.url = url
    this.outgoingSdp = outgoingSdp
    this.peerId = peerId
    this.capabilities = capabilities
    this.pc = new RTCPeerConnection(config)
    this.remote = null
    this.requestId = null
    this.errors = []
    this.pending = new Map()
    this.nextId = 1
    this.gateOpen = false
    this.queued = []
    this.answered = null // resolves when the answer to our offer is applied
    this.pc.onicecandidate = (e) => {
      if (!this.remote) return
      if (this.gateOpen) this.sendCandidate(e.candidate)
      else this.queued.push(e.candidate)
    }
  }

  async start() {
    this.ws = new WebSocket(this.url)
    await new Promise((resolve, reject) => {
      this.ws.once('open', resolve)
      this.ws.once('error', reject)
    })
    this.ws.on('message', (m) => this.onMessage(JSON.parse(String(m))).catch((e) => this.errors.push(String(e?.stack ?? e))))
    await this.rpc('peer.announce', { peer_id: this.peerId, capabilities: this.capabilities })
    return this
  }

  rpc(method, params) {
    const id = this.nextId++
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }))
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }))
  }

  notify(method, params) {
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', method, params }))
  }

  sendCandidate(c) {
    // A null candidate (end of gathering) is sent as an empty one, as the protocol allows.
    this.notify('peer.ice_candidate', {
      from: this.peerId,
      to: this.remote,
      request_id: this.requestId,
      candidate: c?.candidate ?? '',
      sdp_mid: c?.sdpMid ?? null,
      sdp_m_line_index: c?.sdpMLineIndex ?? null,
    })
  }

  openGate() {
    this.gateOpen = true
    while (this.queued.length) this.sendCandidate(this.queued.shift())
  }

  async onMessage(msg) {
    if (msg.id !== undefined && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id)
      this.pending.delete(msg.id)
      if (msg.error) {
        this.errors.push(JSON.stringify(msg.error))
        p.reject(Object.assign(new Error(msg.error.message), { rpc: msg.error }))
      } else p.resolve(msg.result)
      return
    }
    const params = msg.params || {}
    if (msg.method === 'peer.offer') {
      this.remote = params.from
      this.requestId = params.request_id
      this.gateOpen = false
      await this.pc.setRemoteDescription({ type: 'offer', sdp: params.sdp })
      const answer = await this.pc.createAnswer()
      await this.pc.setLocalDescription(answer)
      const sdp = this.outgoingSdp('answer', this.pc.localDescription?.sdp ?? answer.sdp)
      await this.rpc('peer.answer', { from: this.peerId, to: this.remote, sdp, can_trickle_ice_candidates: true, request_id: this.requestId })
      this.openGate()
    } else if (msg.method === 'peer.answer') {
      if (params.request_id !== this.requestId) return
      await this.pc.setRemoteDescription({ type: 'answer', sdp: params.sdp })
      this.answered?.resolve()
    } else if (msg.method === 'peer.ice_candidate' && params.candidate) {
      await this.pc.addIceCandidate({ candidate: params.candidate, sdpMid: params.sdp_mid ?? undefined, sdpMLineIndex: params.sdp_m_line_index ?? undefined })
    }
  }

  // Offers to `remoteId` (the first connection, when `remoteId` is given, or a renegotiation)
  // and resolves once the answer is applied.
  async offer(remoteId = this.remote) {
    this.remote = remoteId
    this.requestId = `${this.peerId}-${this.nextId++}`
    this.gateOpen = false
    let resolve
    const answered = new Promise((r) => { resolve = r })
    this.answered = { resolve }
    const offer = await this.pc.createOffer()
    await this.pc.setLocalDescription(offer)
    const sdp = this.outgoingSdp('offer', this.pc.localDescription?.sdp ?? offer.sdp)
    await this.rpc('peer.offer', { from: this.peerId, to: this.remote, sdp, can_trickle_ice_candidates: true, request_id: this.requestId })
    this.openGate()
    await answered
  }

  async close() {
    try { this.pc.close() } catch {}
    try { this.ws?.close() } catch {}
  }
}

// An outgoingSdp hook for stacks that draw a new o= session id for each description (werift,
// libdatachannel), against RFC 3264 §8 (same id, version counted up): what is sent keeps the
// first id and counts the version up.
export function keepSessionId() {
  let first
  let version = 0
  return (type, sdp) => {
    const m = /^o=(\S+) (\S+) (\S+) (.*)$/m.exec(sdp)
    if (!m) return sdp
    first ??= m[2]
    return sdp.replace(m[0], `o=${m[1]} ${first} ${version++} ${m[4]}`)
  }
}
