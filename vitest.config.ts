import { defineConfig } from 'vitest/config';

// Three projects: fast pure unit tests, the architecture (dependency direction) test, and the NAT lab tests,
// which need root and network namespaces and so run one file at a time.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], environment: 'node' } },
      { test: { name: 'arch', include: ['test/arch/**/*.test.ts'], environment: 'node' } },
      {
        test: {
          name: 'lab',
          include: ['test/lab/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
