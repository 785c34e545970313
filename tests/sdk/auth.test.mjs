// The official `openai` SDK with umbra virtual keys (auth.mode: keys) and
// team policy: the SDK's apiKey is the umbra key, refusals surface as the
// SDK's own error classes, and a key revoked with the CLI stops working on
// the running gateway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { UMBRA_BIN, freePort, startFake, startUmbra, stopAll } from './harness.mjs';

let fake, umbra, dir, baseURL, aliceKey;

function umbraCli(...args) {
  return execFileSync(UMBRA_BIN, args, { cwd: dir, encoding: 'utf8' });
}

function client(apiKey) {
  return new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'umbra-sdk-auth-'));
  fake = await startFake();
  const port = await freePort();
  const cfg = [
    `listen: "127.0.0.1:${port}"`,
    'workers: 1',
    'auth: { mode: keys }',
    'store: "sqlite://umbra.db"',
    `providers: [ { name: fake, type: openai, url: "http://127.0.0.1:${fake.port}", max_attempts: 1 } ]`,
    'models: [ { name: gpt-4o-mini, provider: fake }, { name: claude-x, provider: fake } ]',
    'teams: [ { name: eng, models: ["gpt-*"] } ]',
    '',
  ].join('\n');
  umbra = await startUmbra(dir, port, cfg);
  baseURL = `http://127.0.0.1:${port}/v1`;
  umbraCli('pki', 'init', '--dir', 'pki');
  umbraCli('pki', 'issue', 'alice', '--kind', 'client', '--team', 'eng', '--dir', 'pki', '-c', 'umbra.yaml');
  aliceKey = umbraCli('key', 'create', '-c', 'umbra.yaml', '--identity', 'alice').trim().split('\n').pop();
});

after(async () => {
  await stopAll(umbra, [umbra && umbra.proc, fake && fake.proc]);
});

test('a virtual key as the SDK apiKey', async () => {
  const r = await client(aliceKey).chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(r.choices[0].message.content, 'Hello from the fake upstream.');
  const models = await client(aliceKey).models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['gpt-4o-mini']);
});

test('a wrong key is an AuthenticationError', async () => {
  await assert.rejects(
    client('sk-umbra-aaaaaaaaaaaa_' + 'a'.repeat(52)).chat.completions.create({
      model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }],
    }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key',
  );
});

test('a model outside the team is a PermissionDeniedError naming it', async () => {
  await assert.rejects(
    client(aliceKey).chat.completions.create({ model: 'claude-x', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.PermissionDeniedError && e.status === 403 &&
      e.code === 'model_not_allowed' && /claude-x/.test(e.message),
  );
});

test('a key revoked with the CLI stops working without a restart', async () => {
  const c = client(aliceKey);
  const stream = await c.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true,
  });
  for await (const chunk of stream) assert.ok(chunk); // served before the revocation
  const id = aliceKey.slice('sk-umbra-'.length, 'sk-umbra-'.length + 12);
  umbraCli('key', 'revoke', '-c', 'umbra.yaml', id);
  await new Promise((r) => setTimeout(r, 300)); // > one 100 ms poll
  await assert.rejects(
    c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.code === 'api_key_revoked',
  );
});
