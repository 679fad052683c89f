import { describe, it, expect } from 'vitest'
import { withServer, transport, until, uid, rejectsWithCode } from './helpers.mjs'

const MANIFEST = 'nodes:\n  - { id: in, node_type: Input }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: out }\n'

describe('sessions', () => {
  it('create, get, list, add connected peers, leave on disconnect, remove; errors have codes', async () => {
    const server = await withServer()
    const a = await transport(server, uid('sa'))
    const b = await transport(server, uid('sb'))
    const c = await transport(server, uid('sc'))
    try {
      const s = await a.createSession('room', { maxPeers: 1, manifest: MANIFEST })
      expect([s.id, s.maxPeers, s.manifest, s.peers]).toEqual(['room', 1, MANIFEST, []])
      await rejectsWithCode(a.createSession('room'), 'ERR_SESSION_EXISTS')
      await rejectsWithCode(a.createSession('bad', { manifest: 'nodes: []\nconnections: []\n' }), 'ERR_INVALID_MANIFEST')
      await rejectsWithCode(a.createSession('bad', { maxPeers: 0 }), 'ERR_INVALID_CONFIG')
      await rejectsWithCode(a.createSession('bad', { colour: 'red' }), 'ERR_INVALID_DATA')
      expect(a.hasSession('bad')).toBe(false)
      expect(a.listSessions()).toEqual(['room'])
      expect(() => a.getSession('nope')).toThrow(expect.objectContaining({ code: 'ERR_SESSION_NOT_FOUND' }))

      await rejectsWithCode(a.addPeerToSession('room', b.peerId), 'ERR_PEER_NOT_FOUND') // not connected
      await a.connectPeer(b.peerId)
      await a.connectPeer(c.peerId)
      await a.addPeerToSession('room', b.peerId)
      await rejectsWithCode(a.addPeerToSession('room', c.peerId), 'ERR_MAX_PEERS')
      await rejectsWithCode(a.addPeerToSession('nope', b.peerId), 'ERR_SESSION_NOT_FOUND')
      expect(a.getSession('room').peers).toEqual([b.peerId])

      // A peer that disconnects leaves the session.
      await b.shutdown()
      await until(() => a.getSession('room').peers.length === 0, 10000)
      await a.removeSession('room')
      expect(a.hasSession('room')).toBe(false)
      await rejectsWithCode(a.removeSession('room'), 'ERR_SESSION_NOT_FOUND')
    } finally {
      await a.shutdown()
      await b.shutdown()
      await c.shutdown()
      await server.close()
    }
  })

  it('a snapshot is JSON, restores the session elsewhere with its peers reconnected, and a corrupt one creates nothing', async () => {
    const server = await withServer()
    const a = await transport(server, uid('ra'))
    const b = await transport(server, uid('rb'))
    const a2 = await transport(server, uid('ra2'))
    try {
      await a.connectPeer(b.peerId)
      const s = await a.createSession('call', { manifest: MANIFEST })
      await s.addPeer(b.peerId)
      const snap = JSON.parse(JSON.stringify(s.snapshot()))
      expect(snap).toMatchObject({ kind: 'remotemedia-session', version: 1, id: 'call', peers: [b.peerId], manifest: MANIFEST })

      // Another transport restores it: the session exists there and b is connected again.
      const restored = await a2.restoreSession(snap)
      expect(restored.peers).toEqual([b.peerId])
      expect(restored.failedPeers).toEqual([])
      expect(a2.listPeers()).toContain(b.peerId)
      await rejectsWithCode(a2.restoreSession(snap), 'ERR_SESSION_EXISTS')

      for (const bad of [
        { ...snap, id: 'other', kind: 'foreign' },
        { ...snap, id: 'other', version: 7 },
        { ...snap, id: 'other', peers: ['not a valid id'] },
        { ...snap, id: 'other', manifest: 'nodes: [' },
        { ...snap, id: 'other', unexpected: true },
      ]) {
        await rejectsWithCode(a2.restoreSession(bad), 'ERR_INVALID_DATA')
        expect(a2.hasSession('other')).toBe(false)
      }
      await rejectsWithCode(a2.restoreSession('garbage'), 'ERR_INVALID_DATA')
    } finally {
      await a.shutdown()
      await b.shutdown()
      await a2.shutdown()
      await server.close()
    }
  })
})
