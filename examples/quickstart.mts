// Two peers meet through the bundled signaling server and talk over a data channel.
import { SignalingServer, WebRtcTransport } from 'remotemedia-webrtc'

const server = await SignalingServer.listen({ host: '127.0.0.1', port: 0 })
const alice = new WebRtcTransport({ signalingUrl: server.url, peerId: 'alice', bindAddress: '127.0.0.1' })
const bob = new WebRtcTransport({ signalingUrl: server.url, peerId: 'bob', bindAddress: '127.0.0.1' })
await alice.start()
await bob.start()

bob.on('data-channel', (channel) => {
  channel.on('message', (m) => channel.send({ echo: m.data }))   // answer every message
})

const peer = await alice.connectPeer('bob')                      // resolves once connected
const reply = new Promise((resolve) => peer.defaultChannel!.once('message', resolve))
await peer.defaultChannel!.send({ hello: 'bob' })
console.log('alice got', JSON.stringify(await reply))

await alice.shutdown()
await bob.shutdown()
await server.close()
