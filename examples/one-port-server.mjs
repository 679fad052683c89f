// Signaling and a media peer behind ONE public port, served by a plain Node `http` server (the
// shape of an Express, Fastify or Next.js custom server):
//
//   GET /   → JSON telling clients where to connect
//   /ws     → WebSocket upgrade, handed to the native signaling server
//
// The native SignalingServer listens on an internal port of its own on 127.0.0.1; each upgrade
// on /ws is piped to it byte for byte (the original request head, then both directions), so
// clients only ever see the public port. A server-side peer, 'media-server', connects through the
// public port like any client and echoes every data channel message.
//
//   PORT=8080 node examples/one-port-server.mjs     (PORT unset or 0: any free port)
//
// Prints `one-port server on http://127.0.0.1:PORT/ (signaling ws://127.0.0.1:PORT/ws)` when
// ready; Ctrl-C or SIGTERM closes everything and exits 0.
import { SignalingServer, WebRtcTransport } from 'remotemedia-webrtc'
import http from 'node:http'
import net from 'node:net'

const HOST = '127.0.0.1'
const signaling = await SignalingServer.listen({ host: HOST, port: 0 }) // internal
const internalPort = Number(new URL(signaling.url).port)

const web = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ signaling: `ws://${req.headers.host}/ws`, mediaPeer: 'media-server' }))
  } else {
    res.writeHead(404).end()
  }
})

// Upgrades on /ws: replay the request to the internal signaling port, then pipe both ways.
const sockets = new Set()
web.on('upgrade', (req, socket, head) => {
  if (new URL(req.url, 'http://x').pathname !== '/ws') return socket.destroy()
  const upstream = net.connect(internalPort, HOST, () => {
    let lines = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`
    upstream.write(lines + '\r\n')
    if (head.length) upstream.write(head)
    socket.pipe(upstream).pipe(socket)
  })
  for (const s of [socket, upstream]) {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  }
  const close = () => { socket.destroy(); upstream.destroy() }
  socket.on('error', close)
  upstream.on('error', close)
  socket.on('close', close)
  upstream.on('close', close)
})

await new Promise((resolve) => web.listen(Number(process.env.PORT ?? 0), HOST, resolve))
const { port } = web.address()
const publicUrl = `ws://${HOST}:${port}/ws`

// The media peer: a transport like any client's, through the public port.
const media = new WebRtcTransport({ signalingUrl: publicUrl, peerId: 'media-server', bindAddress: HOST })
await media.start()
media.on('data-channel', (channel) => {
  channel.on('message', (m) => channel.send(m.kind === 'json' ? { echo: m.data } : m.data).catch(() => {}))
})

console.log(`one-port server on http://${HOST}:${port}/ (signaling ${publicUrl})`)

let closing = false
async function shutdown() {
  if (closing) return
  closing = true
  await media.shutdown()
  await signaling.close()
  for (const s of sockets) s.destroy()
  await new Promise((resolve) => web.close(resolve))
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
