// `firecracker-uffd/testing`: run a restore end to end in your own tests without Firecracker.
export { EMULATOR_PATH, emulatorPath, emulatorArgs, runEmulator } from './emulator.js';
export type { EmulatorOptions, EmulatorReport, EmulatorResult } from './emulator.js';
