// The emulator runner lives in the product (firecracker-uffd/testing) so users' tests can use it too.
export * from '../../src/testing/emulator.js';
