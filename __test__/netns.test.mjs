import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

// Runs `script` with node inside a fresh network namespace that has only loopback. Needs root
// and util-linux `unshare` plus iproute2 `ip` (.ci/run installs them): without them this fails.
function inNamespace(script) {
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" -e "$1"', process.execPath, script], {
    timeout: 30000,
    encoding: 'utf8',
  })
  if (r.error) throw new Error(`cannot run unshare: ${r.error.message}`)
  return r
}

describe('in a loopback-only network namespace', () => {
  it('peers connect and exchange messages (no multicast route needed)', () => {
    const script = `
      const { SignalingServer, WebRtcTransport } = require(${JSON.stringify(path.join(root, 'index.js'))})
      ;(async () => {
        const s = await SignalingServer.listen({ port: 0 })
        for (const bindAddress of ['127.0.0.1', '0.0.0.0']) {
          const a = new WebRtcTransport({ signalingUrl: s.url, peerId: 'a', bindAddress, connectTimeoutMs: 5000 })
          const b = new WebRtcTransport({ signalingUrl: s.url, peerId: 'b', bindAddress, connectTimeoutMs: 5000 })
          await a.start(); await b.start()
          const got = new Promise((r) => b.on('data-channel', (ch) => ch.on('message', (m) => r(m.data))))
          const p = await a.connectPeer('b')
          await p.defaultChannel.send('inside ' + bindAddress)
          console.log(await got)
          await a.shutdown(); await b.shutdown()
        }
        await s.close()
      })().catch((e) => { console.error(e.code, e.message); process.exit(1) })
    `
    const r = inNamespace(script)
    expect(r.stderr).toBe('')
    expect(r.stdout.trim().split('\n')).toEqual(['inside 127.0.0.1', 'inside 0.0.0.0'])
    expect(r.status).toBe(0)
  })
})
