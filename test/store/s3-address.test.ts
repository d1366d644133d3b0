// Where S3Store's undici GET goes: the SDK's own endpoint resolution for the client S3Store builds
// (no server: only URLs are computed, no connection is opened).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { S3SignedGet, objectPath } from '../../src/store/s3-get.js';
import { needsPathStyle } from '../../src/store/s3.js';
import { StoreError } from '../../src/store/types.js';

async function addressOf(
  bucket: string,
  config: S3ClientConfig,
): Promise<{ origin: string; host: string; basePath: string; region: string }> {
  // S3Store's rule: path-style by default only for IP and localhost endpoints.
  const endpoint = typeof config.endpoint === 'string' ? config.endpoint : undefined;
  const client = new S3Client({ forcePathStyle: endpoint ? needsPathStyle(endpoint) : false, ...config });
  const get = new S3SignedGet(client, bucket, 'p/chunks/', {});
  try {
    const { address } = await get.resolve();
    return { origin: address.origin, host: address.host, basePath: address.basePath, region: address.signingRegion };
  } finally {
    await get.close();
    client.destroy();
  }
}

test('custom endpoints: path-style for an IP or localhost, virtual-hosted for a name unless forced, the endpoint path kept', async () => {
  assert.deepEqual(await addressOf('bkt', { endpoint: 'http://127.0.0.1:7480', region: 'us-east-1' }), {
    origin: 'http://127.0.0.1:7480',
    host: '127.0.0.1:7480',
    basePath: '/bkt',
    region: 'us-east-1',
  });
  assert.equal((await addressOf('bkt', { endpoint: 'http://localhost:9000', region: 'us-east-1' })).basePath, '/bkt');
  assert.deepEqual(await addressOf('bkt', { endpoint: 'https://minio.example.com:9000', region: 'us-east-1' }), {
    origin: 'https://bkt.minio.example.com:9000',
    host: 'bkt.minio.example.com:9000',
    basePath: '',
    region: 'us-east-1',
  });
  const forced = await addressOf('bkt', { endpoint: 'https://gw.example.com/s3', region: 'eu-central-1', forcePathStyle: true });
  assert.deepEqual(forced, { origin: 'https://gw.example.com', host: 'gw.example.com', basePath: '/s3/bkt', region: 'eu-central-1' });
});

test('AWS itself: virtual-hosted in the region, path-style for a dotted bucket (TLS), FIPS when asked', async () => {
  assert.deepEqual(await addressOf('bkt', { region: 'eu-west-1' }), {
    origin: 'https://bkt.s3.eu-west-1.amazonaws.com',
    host: 'bkt.s3.eu-west-1.amazonaws.com',
    basePath: '',
    region: 'eu-west-1',
  });
  assert.deepEqual(await addressOf('my.dotted.bucket', { region: 'eu-west-1' }), {
    origin: 'https://s3.eu-west-1.amazonaws.com',
    host: 's3.eu-west-1.amazonaws.com',
    basePath: '/my.dotted.bucket',
    region: 'eu-west-1',
  });
  assert.equal((await addressOf('bkt', { region: 'us-west-2', useFipsEndpoint: true })).host, 'bkt.s3-fips.us-west-2.amazonaws.com');
});

test('a directory bucket (S3 Express session auth) is refused with a config error', async () => {
  await assert.rejects(
    addressOf('name--usw2-az1--x-s3', { region: 'us-west-2' }),
    (e: unknown) => e instanceof StoreError && e.kind === 'config' && /sigv4-s3express/.test(e.message),
  );
});

test("object paths: each key segment escaped as the SDK escapes it (RFC 3986, also !'()*), slashes kept", () => {
  assert.equal(objectPath('/bkt', 'p/chunks/ab/abcdef'), '/bkt/p/chunks/ab/abcdef');
  assert.equal(objectPath('', "a b/c+d/e!'()*~/ü"), '/a%20b/c%2Bd/e%21%27%28%29%2A~/%C3%BC');
});
