import { describe, it, expect } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { lib } from '../helpers.mjs'

const { Pipeline } = lib

const frame = () => ({ samples: new Float32Array(480), sampleRate: 48000 })

// `layers` layers of two Passthrough nodes, fully wired to the next: 2^layers paths.
function bomb(layers) {
  const nodes = [{ id: 'in', node_type: 'Input' }]
  const connections = []
  let prev = ['in']
  for (let l = 0; l < layers; l++) {
    const cur = [`p${l}_0`, `p${l}_1`]
    for (const c of cur) {
      nodes.push({ id: c, node_type: 'Passthrough' })
      for (const p of prev) connections.push({ from: p, to: c })
    }
    prev = cur
  }
  nodes.push({ id: 'out', node_type: 'Output' })
  for (const p of prev) connections.push({ from: p, to: 'out' })
  return { nodes, connections }
}

describe('hostile pipelines', () => {
  it('refuses a cross-wired Passthrough bomb with ERR_INVALID_MANIFEST', async () => {
    await expect(Pipeline.fromManifest(bomb(24))).rejects.toMatchObject({ code: 'ERR_INVALID_MANIFEST' })
  })

  it('refuses /dev/zero and a FIFO as manifest files without hanging', async () => {
    await expect(Pipeline.fromManifest('/dev/zero')).rejects.toMatchObject({ code: 'ERR_INVALID_MANIFEST' })
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rm-fifo-'))
    const fifo = path.join(dir, 'p.yaml')
    execFileSync('mkfifo', [fifo])
    try {
      await expect(Pipeline.fromManifest(fifo)).rejects.toMatchObject({ code: 'ERR_INVALID_MANIFEST' })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('drops the frame of a JS node whose promise never settles with ERR_TIMEOUT, and the next frame runs', async () => {
    let calls = 0
    Pipeline.registerNode('HostileHang', () => (++calls === 1 ? new Promise(() => {}) : null), { timeoutMs: 200 })
    try {
      const p = await Pipeline.fromManifest({
        nodes: [{ id: 'in', node_type: 'Input' }, { id: 'hang', node_type: 'HostileHang' }, { id: 'out', node_type: 'Output' }],
        connections: [{ from: 'in', to: 'hang' }, { from: 'hang', to: 'out' }],
      })
      const first = await p.execute(frame())
      expect(first).toEqual([{ nodeId: 'hang', error: expect.objectContaining({ code: 'ERR_TIMEOUT' }) }])
      expect(await p.execute(frame())).toEqual([])
      expect(calls).toBe(2)
    } finally {
      Pipeline.unregisterNode('HostileHang')
    }
  })

  it('refuses a bad node timeout with ERR_INVALID_CONFIG', () => {
    expect(() => Pipeline.registerNode('HostileBad', () => null, { timeoutMs: 0 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
  })
})
