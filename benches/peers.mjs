// Opening one connected pair per library, timed the same way for every library: from the start
// of the connect to the first data-channel message delivered at the remote end.
//
// Every pair returned has: connectMs, chA / chB (the two ends of the first data channel),
// onA / onB (replaceable message handlers for the A and B ends) and close().
import { isLoopbackCandidate, now, withTimeout } from './common.mjs'

const FIRST_MESSAGE_TIMEOUT_MS = 5_000

let rmSeq = 0

// remotemedia-webrtc: two WebRtcTransports (new ones for every pair, unique peer ids) on the
// given SignalingServer; a.connectPeer(b) → send on peer.defaultChannel → delivered at b.
// Timestamps: coldMs from the first constructor (both transports are created and started in
// parallel), connectMs / resolveMs from the connectPeer() call.
export async function rmOpenPair(rm, server, options = {}) {
  const n = ++rmSeq
  const ids = [`bench-a-${process.pid}-${n}`, `bench-b-${process.pid}-${n}`]
  const errors = []
  const tCold = now()
  const mk = (peerId) => {
    const t = new rm.WebRtcTransport({
      signalingUrl: server.url,
      peerId,
      bindAddress: '127.0.0.1',
      ...options,
    })
    t.on('error', (e) => errors.push(`${peerId}: ${e.code} ${e.message}`))
    return t
  }
  const a = mk(ids[0])
  const b = mk(ids[1])
  const pair = { a, b, errors, onA: () => {}, onB: null, chA: null, chB: null }
  const close = async () => {
    const t = now()
    await Promise.allSettled([a.shutdown(), b.shutdown()])
    pair.shutdownMs = now() - t
  }
  pair.close = close
  try {
    let firstAt = 0
    const first = new Promise((resolve) => {
      pair.onB = (msg) => {
        firstAt = now()
        resolve(msg)
      }
    })
    b.on('data-channel', (ch) => {
      pair.chB = ch
      ch.on('message', (m) => pair.onB(m))
    })
    await withTimeout(Promise.all([a.start(), b.start()]), FIRST_MESSAGE_TIMEOUT_MS, 'transport start')
    // a's peer-state changes, ms after connectPeer() was called ('connected' = ICE + DTLS up).
    pair.states = {}
    a.on('peer-state', (e) => { pair.states[e.state] ??= now() - t0 })
    const t0 = now()
    const peer = await withTimeout(a.connectPeer(ids[1]), FIRST_MESSAGE_TIMEOUT_MS, 'connectPeer')
    const tResolved = now()
    pair.peer = peer
    pair.chA = peer.defaultChannel
    if (!pair.chA) throw new Error('connectPeer resolved without a defaultChannel')
    pair.chA.on('message', (m) => pair.onA(m))
    const sent = pair.chA.send({ hello: n })
    await withTimeout(first, FIRST_MESSAGE_TIMEOUT_MS, 'first message at b')
    await sent
    pair.connectMs = firstAt - t0
    pair.resolveMs = tResolved - t0
    pair.coldMs = firstAt - tCold
    return pair
  } catch (e) {
    await close()
    e.message += errors.length ? ` (transport errors: ${errors.join('; ')})` : ''
    throw e
  }
}

// node-datachannel: direct in-process SDP/candidate exchange (no signaling server), ICE bound to
// 127.0.0.1. The clock starts before the two PeerConnections are created.
export async function ndcOpenPair(ndc) {
  const t0 = now()
  const cfg = { iceServers: [], bindAddress: '127.0.0.1' }
  const pcA = new ndc.PeerConnection('bench-a', cfg)
  const pcB = new ndc.PeerConnection('bench-b', cfg)
  const pair = { onA: () => {}, onB: null, chA: null, chB: null }
  let closed = false
  pair.close = async () => {
    if (closed) return
    closed = true
    try { pair.chA?.close() } catch {}
    try { pair.chB?.close() } catch {}
    pcA.close()
    pcB.close()
  }
  try {
    // libdatachannel's callbacks arrive on separate thread-safe functions, so a candidate can
    // overtake its description; adding it first aborts the process. Hold candidates until the
    // receiving side has its remote description.
    const side = (pc) => ({ pc, ready: false, held: [] })
    const A = side(pcA)
    const B = side(pcB)
    const give = (to, c, mid) => {
      if (closed || !isLoopbackCandidate(c)) return
      if (to.ready) to.pc.addRemoteCandidate(c, mid)
      else to.held.push([c, mid])
    }
    const describe = (to, sdp, type) => {
      if (closed) return
      to.pc.setRemoteDescription(sdp, type)
      to.ready = true
      for (const [c, mid] of to.held.splice(0)) to.pc.addRemoteCandidate(c, mid)
    }
    pcA.onLocalDescription((sdp, type) => describe(B, sdp, type))
    pcB.onLocalDescription((sdp, type) => describe(A, sdp, type))
    pcA.onLocalCandidate((c, mid) => give(B, c, mid))
    pcB.onLocalCandidate((c, mid) => give(A, c, mid))
    let firstAt = 0
    const first = new Promise((resolve) => {
      pair.onB = (m) => {
        firstAt = now()
        resolve(m)
      }
    })
    pcB.onDataChannel((dc) => {
      pair.chB = dc
      dc.onMessage((m) => pair.onB(m))
    })
    const dc = pcA.createDataChannel('default')
    pair.chA = dc
    dc.onMessage((m) => pair.onA(m))
    dc.onOpen(() => dc.sendMessage(JSON.stringify({ hello: 1 })))
    await withTimeout(first, FIRST_MESSAGE_TIMEOUT_MS, 'first message at b')
    pair.connectMs = firstAt - t0
    pair.pcA = pcA
    pair.pcB = pcB
    return pair
  } catch (e) {
    await pair.close()
    throw e
  }
}

// W3C RTCPeerConnection libraries (@roamhq/wrtc, werift): direct in-process offer/answer and
// trickled candidates, only the 127.0.0.1 ones passed on. The clock starts before the two
// RTCPeerConnections are created.
export async function w3cOpenPair(RTCPeerConnection, config = {}) {
  const t0 = now()
  const cfg = { iceServers: [], ...config }
  const pcA = new RTCPeerConnection(cfg)
  const pcB = new RTCPeerConnection(cfg)
  const pair = { onA: () => {}, onB: null, chA: null, chB: null, pcA, pcB }
  let closed = false
  pair.close = async () => {
    if (closed) return
    closed = true
    try { pair.chA?.close() } catch {}
    try { pair.chB?.close() } catch {}
    await Promise.allSettled([pcA.close(), pcB.close()])
  }
  try {
    const relay = (to) => (e) => {
      if (e.candidate && isLoopbackCandidate(e.candidate.candidate)) to.addIceCandidate(e.candidate).catch(() => {})
    }
    pcA.onicecandidate = relay(pcB)
    pcB.onicecandidate = relay(pcA)
    let firstAt = 0
    const first = new Promise((resolve) => {
      pair.onB = (m) => {
        firstAt = now()
        resolve(m)
      }
    })
    pcB.ondatachannel = (e) => {
      pair.chB = e.channel
      e.channel.binaryType = 'arraybuffer'
      e.channel.onmessage = (ev) => pair.onB(ev.data)
    }
    const dc = pcA.createDataChannel('default')
    dc.binaryType = 'arraybuffer'
    pair.chA = dc
    dc.onmessage = (ev) => pair.onA(ev.data)
    dc.onopen = () => dc.send(JSON.stringify({ hello: 1 }))
    const offer = await pcA.createOffer()
    await pcA.setLocalDescription(offer)
    await pcB.setRemoteDescription(pcA.localDescription)
    const answer = await pcB.createAnswer()
    await pcB.setLocalDescription(answer)
    await pcA.setRemoteDescription(pcB.localDescription)
    await withTimeout(first, FIRST_MESSAGE_TIMEOUT_MS, 'first message at b')
    pair.connectMs = firstAt - t0
    return pair
  } catch (e) {
    await pair.close()
    throw e
  }
}

// werift: bind ICE sockets to 127.0.0.1, advertise 127.0.0.1 as a host address, skip IPv6.
export const WERIFT_CONFIG = {
  iceUseIpv6: false,
  iceInterfaceAddresses: { udp4: '127.0.0.1' },
  iceAdditionalHostAddresses: ['127.0.0.1'],
}
