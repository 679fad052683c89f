import { describe, it, expect } from 'vitest'
import { execFileSync, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

describe('the README example', () => {
  it('type-checks against index.d.ts, runs, and exits by itself', () => {
    const out = path.join(root, 'examples', '.build')
    execFileSync(process.execPath, [
      path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
      '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
      '--skipLibCheck', 'false', '--types', 'node', '--rootDir', path.join(root, 'examples'), '--outDir', out,
      path.join(root, 'examples', 'quickstart.mts'),
    ], { cwd: root, stdio: 'pipe' })
    const r = spawnSync(process.execPath, [path.join(out, 'quickstart.mjs')], { cwd: root, timeout: 20000, encoding: 'utf8' })
    expect(r.error).toBeUndefined()
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe('alice got {"kind":"json","data":{"echo":{"hello":"bob"}}}')
  })

  it('counts under 25 lines of code', async () => {
    const { readFileSync } = await import('node:fs')
    const code = readFileSync(path.join(root, 'examples', 'quickstart.mts'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.trim().startsWith('//'))
    expect(code.length).toBeLessThan(25)
  })
})

describe('process lifetime', () => {
  it('a script that closes everything exits on its own, even with listeners still attached', () => {
    const script = `
      const { SignalingServer, WebRtcTransport } = require(${JSON.stringify(path.join(root, 'index.js'))})
      ;(async () => {
        const server = await SignalingServer.listen({ port: 0 })
        server.on('peer-announced', () => {})
        const a = new WebRtcTransport({ signalingUrl: server.url, peerId: 'a', bindAddress: '127.0.0.1' })
        const b = new WebRtcTransport({ signalingUrl: server.url, peerId: 'b', bindAddress: '127.0.0.1' })
        await a.start(); await b.start()
        b.on('data-channel', (ch) => ch.on('message', () => {}))
        const p = await a.connectPeer('b')
        await p.createDataChannel('extra')
        await p.defaultChannel.send('x')
        await a.shutdown(); await b.shutdown(); await server.close()
        console.log('closed')
      })()
    `
    const t0 = Date.now()
    const r = spawnSync(process.execPath, ['-e', script], { timeout: 15000, encoding: 'utf8' })
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('closed')
    expect(r.status).toBe(0)
    expect(r.signal).toBeNull()
    expect(Date.now() - t0).toBeLessThan(15000)
  })

  it('a listening server and a started transport keep Node alive until closed or unref()d', () => {
    const lib = JSON.stringify(path.join(root, 'index.js'))
    const open = `
      const { SignalingServer, WebRtcTransport } = require(${lib})
      ;(async () => {
        const s = await SignalingServer.listen({ port: 0 })
        const t = new WebRtcTransport({ signalingUrl: s.url, peerId: 'k' })
        await t.start()
        if (process.argv[1] === 'unref') { s.unref(); t.unref() }
        console.log('up')
      })()
    `
    const kept = spawnSync(process.execPath, ['-e', open, 'ref'], { timeout: 2000, encoding: 'utf8' })
    expect(kept.stdout.trim()).toBe('up')
    expect(kept.signal).toBe('SIGTERM') // still running when the timeout killed it
    const gone = spawnSync(process.execPath, ['-e', open, 'unref'], { timeout: 10000, encoding: 'utf8' })
    expect(gone.stdout.trim()).toBe('up')
    expect(gone.status).toBe(0)
    expect(gone.signal).toBeNull()
  })
})
