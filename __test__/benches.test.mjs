// The benchmark scripts (`npm run bench`) are not run by the test suite (they take minutes and
// measure this machine), but they must at least parse: a syntax error once shipped in one.
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const benches = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'benches')

describe('benchmark scripts', () => {
  const scripts = readdirSync(benches).filter((f) => f.endsWith('.mjs'))
  it('exist', () => {
    expect(scripts).toContain('media.mjs')
  })
  for (const f of scripts) {
    it(`${f} parses`, () => {
      const r = spawnSync(process.execPath, ['--check', path.join(benches, f)], { encoding: 'utf8' })
      expect(r.stderr).toBe('')
      expect(r.status).toBe(0)
    })
  }
})
