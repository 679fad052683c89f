import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.test.mjs'],
    testTimeout: 30000,
    hookTimeout: 30000,
    // Two cores: suites that open many peer connections or a browser run one file at a time.
    fileParallelism: false,
    reporters: ['default', 'json'],
    outputFile: { json: 'target/vitest-results.json' },
  },
})
