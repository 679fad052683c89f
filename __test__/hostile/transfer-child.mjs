// Child process of js-input.test.mjs (run with `node --expose-gc`): sends large video frames and,
// while each encode is under way, transfers the frame's ArrayBuffer away, drops it and collects
// it. A binding that kept a pointer into that memory past the call reads freed memory (SIGSEGV).
// Exits 0 when every send settled. argv[2]: 'send' or 'broadcast'.
import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
const { SignalingServer, WebRtcTransport } = require('../../index.js')

const mode = process.argv[2] || 'send'
const [w, h] = [3840, 2160]
const size = w * h * 3 / 2
const server = await SignalingServer.listen({ host: '127.0.0.1', port: 0 })
const mk = (id) => new WebRtcTransport({ signalingUrl: server.url, peerId: `${id}-${process.pid}`, bindAddress: '127.0.0.1' })
const a = mk('xfer-a')
const b = mk('xfer-b')
await a.start()
await b.start()
const peer = await a.connectPeer(b.peerId)
await peer.addVideoTrack({ width: w, height: h, framerate: 30, bitrate: 4_000_000, keyframeInterval: 30 })

let settled = 0
for (let i = 0; i < 12; i++) {
  const ab = new ArrayBuffer(size)
  new Uint8Array(ab).fill(16 + (i * 7) % 200)
  const frame = { data: new Uint8Array(ab), width: w, height: h, timestampUs: i * 33333, keyframe: i === 0 }
  const p = mode === 'broadcast' ? a.broadcastVideo(frame) : a.sendVideo(b.peerId, frame)
  // The call returned: move the memory away from `ab`, drop the new owner and collect it.
  let moved = structuredClone(ab, { transfer: [ab] })
  moved = null
  for (let k = 0; k < 3; k++) {
    globalThis.gc()
    // Reuse the freed pages for something else.
    new Uint8Array(size).fill(0xff)
  }
  await p.then(() => settled++, (e) => {
    // A send may fail for a reason of its own (e.g. the track is not negotiated yet) but must
    // not crash; only a coded error is acceptable.
    if (!e || typeof e.code !== 'string') throw e
    settled++
  })
}
await a.shutdown()
await b.shutdown()
await server.close()
console.log(`settled ${settled}`)
process.exit(settled === 12 ? 0 : 3)
