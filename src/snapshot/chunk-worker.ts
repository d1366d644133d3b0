// A chunk codec thread: hashing, (de)compression and verification off the main event loop (which
// routes every VM's chunk requests and must not stall for milliseconds on a 4 MiB chunk).
import { parentPort } from 'node:worker_threads';
import {
  analyzeChunk,
  ChunkFormatError,
  decodeChunkBlob,
  decodeFrames,
  encodeChunkBlob,
  encodeChunkBlobFramed,
  sha256Hex,
} from './chunk-format.js';
import type { CodecRequest, CodecResponse } from './chunk-pool.js';

let known = new Set<string>();

parentPort!.on('message', (req: CodecRequest) => {
  let res: CodecResponse;
  let transfer: ArrayBuffer[] = [];
  try {
    if (req.op === 'ping') {
      res = { id: req.id, op: 'ping' };
    } else if (req.op === 'known') {
      known = new Set(req.digests);
      res = { id: req.id, op: 'known' };
    } else if (req.op === 'encode') {
      const chunk = new Uint8Array(req.buffer, 0, req.length);
      const a = analyzeChunk(chunk);
      if (a.dataPages === 0) {
        res = { id: req.id, op: 'encode', allZero: true, buffer: req.buffer };
      } else {
        const digest = sha256Hex(chunk);
        let blob: Uint8Array | undefined;
        let frames: { frameBytes: number[]; frameSha256: string[] } | undefined;
        if (!known.has(digest)) {
          let b: Uint8Array;
          if (req.frameBytes > 0) {
            const f = encodeChunkBlobFramed(chunk, a, req.frameBytes, req.level);
            b = f.blob;
            frames = { frameBytes: f.frameBytes, frameSha256: f.frameSha256 };
          } else b = encodeChunkBlob(chunk, a, req.level);
          blob = new Uint8Array(b); // own buffer, transferable
          transfer.push(blob.buffer as ArrayBuffer);
        }
        res = {
          id: req.id,
          op: 'encode',
          allZero: false,
          digest,
          zeroBitmap: a.zeroBitmap,
          zeroPages: a.zeroPages,
          blob,
          frames,
          buffer: req.buffer,
        };
      }
      transfer.push(req.buffer);
    } else if (req.op === 'frames') {
      decodeFrames(req.src, new Uint8Array(req.out, 0, req.length), req.zeroBitmap, req.frameBytes, req.jobs);
      res = { id: req.id, op: 'frames' };
    } else {
      decodeChunkBlob(req.blob, new Uint8Array(req.out, 0, req.length), req.digest);
      res = { id: req.id, op: 'decode' };
    }
  } catch (err) {
    transfer = [];
    res = { id: req.id, op: 'error', corrupt: err instanceof ChunkFormatError, message: (err as Error).message };
  }
  parentPort!.postMessage(res, transfer);
});
