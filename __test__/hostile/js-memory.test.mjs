// Hostile JS at the binding boundary (issue 12): memory the caller gives away while a call it made
// is still using it. No binding entry point may keep a pointer into JS memory after it returns:
// sendAudio/broadcastAudio encode within the call, channel sends and pipeline pushes copy within
// the call, and sendVideo/broadcastVideo copy the frame before encoding it off the JS thread.
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

describe('hostile JS input: no pointer into JS memory outlives the call', () => {
  for (const mode of ['send', 'broadcast']) {
    it(`${mode}Video survives the frame's ArrayBuffer being transferred away and collected during the encode`, () => {
      // A child process: a use-after-free kills it with SIGSEGV instead of failing an assertion.
      const r = spawnSync(process.execPath, ['--expose-gc', path.join(here, 'transfer-child.mjs'), mode], {
        encoding: 'utf8',
        timeout: 120_000,
      })
      expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(-2000) }).toEqual({ status: 0, signal: null, stderr: expect.any(String) })
      expect(r.stdout).toMatch(/settled 12/)
    }, 150_000)
  }
})

