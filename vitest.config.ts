import { defineConfig } from 'vitest/config';

// Three projects: fast pure unit tests, the architecture (dependency direction) test, and the NAT lab tests,
// which need root and network namespaces and so run one file at a time.
export default defineConfig({
  test: {
    projects: [
      // Renderer view tests are .test.tsx and ask for jsdom themselves (`// @vitest-environment jsdom`).
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts', 'test/unit/**/*.test.tsx'], environment: 'node' } },
      { test: { name: 'arch', include: ['test/arch/**/*.test.ts'], environment: 'node' } },
      {
        test: {
          name: 'lab',
          include: ['test/lab/**/*.test.ts', 'test/vm/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
