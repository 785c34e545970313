// The official `openai` npm SDK as a client of umbra (node --test, Node 20).
// Starts the Python fake upstream (tests/integration/fakeupstream.py) and
// `umbra serve` on free 127.0.0.1 ports, and kills both at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { freePort, startFake, startUmbra, stopAll } from './harness.mjs';

let fake, umbra, client, dir, baseURL;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'umbra-sdk-'));
  fake = await startFake();
  const port = await freePort();
  const cfg = [
    `listen: "127.0.0.1:${port}"`,
    'workers: 1',
    'providers:',
    '  - name: fake',
    '    type: openai',
    `    url: "http://127.0.0.1:${fake.port}"`,
    '    api_key: "sk-upstream"',
    '    max_attempts: 1',
    'models:',
    '  - name: gpt-4o-mini',
    '    provider: fake',
    '    upstream_model: fake-upstream-model',
    '  - name: text-embedding-3-small',
    '    provider: fake',
    '',
  ].join('\n');
  umbra = await startUmbra(dir, port, cfg);
  baseURL = `http://127.0.0.1:${port}/v1`;
  client = new OpenAI({ baseURL, apiKey: 'sk-client-not-forwarded', maxRetries: 0, timeout: 20000 });
});

after(async () => {
  await stopAll(umbra, [umbra && umbra.proc, fake && fake.proc]);
});

test('chat completion, non-streaming', async () => {
  const r = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Say hello' }],
    temperature: 0.2,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, 'Hello from the fake upstream.');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.deepEqual(r.usage, { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 });
});

test('chat completion, non-streaming, with response headers', async () => {
  const { data, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })
    .withResponse();
  assert.equal(data.choices[0].message.content, 'Hello from the fake upstream.');
  assert.ok(response.headers.get('x-request-id'));
  assert.match(response.headers.get('server-timing') || '', /umbra;dur=[\d.]+/);
});

test('chat completion, streaming with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'fake:content=The quick brown fox jumps,prompt_tokens=21,completion_tokens=5' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.choices.length) text += chunk.choices[0].delta.content || '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, 'The quick brown fox jumps');
  assert.ok(chunks >= 7, `chunks: ${chunks}`);
  assert.deepEqual(usage, { prompt_tokens: 21, completion_tokens: 5, total_tokens: 26 });
});

test('chat completion, streaming without include_usage has no usage chunk', async () => {
  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'fake:content=alpha beta gamma' }],
    stream: true,
  });
  let text = '';
  for await (const chunk of stream) {
    assert.ok(chunk.choices.length > 0, 'usage-only chunk sent to a client that did not ask for it');
    assert.ok(!chunk.usage, 'usage present');
    text += chunk.choices[0].delta.content || '';
  }
  assert.equal(text, 'alpha beta gamma');
});

test('chat completion stream helper (runner) reassembles the message', async () => {
  const runner = client.chat.completions.stream({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'fake:content=one two three' }],
  });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, 'one two three');
});

test('embeddings', async () => {
  const r = await client.embeddings.create({
    model: 'text-embedding-3-small',
    input: ['a', 'b', 'c'],
    encoding_format: 'float',
  });
  assert.equal(r.object, 'list');
  assert.equal(r.data.length, 3);
  assert.deepEqual(r.data.map((d) => d.index), [0, 1, 2]);
  assert.equal(r.data[0].embedding.length, 8);
  assert.equal(r.usage.prompt_tokens, 11);
});

test('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), ['gpt-4o-mini', 'text-embedding-3-small']);
});

test('unknown model -> NotFoundError (404)', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
      assert.equal(e.status, 404);
      assert.equal(e.type, 'not_found_error');
      assert.ok(e.requestID || e.headers?.get?.('x-request-id'));
      return true;
    },
  );
});

test('bad request -> BadRequestError (400)', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o-mini', messages: 'not a list' }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
      assert.equal(e.status, 400);
      assert.equal(e.type, 'invalid_request_error');
      return true;
    },
  );
});

test('upstream 429 -> RateLimitError with retry-after', async () => {
  await assert.rejects(
    client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'fake:status=429,retry_after=3' }],
    }),
    (e) => {
      assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
      assert.equal(e.status, 429);
      assert.equal(e.headers.get('retry-after'), '3');
      return true;
    },
  );
});

test('upstream 500 -> InternalServerError (502)', async () => {
  await assert.rejects(
    client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'fake:status=500' }],
    }),
    (e) => {
      assert.ok(e instanceof OpenAI.InternalServerError, e.constructor.name);
      assert.equal(e.status, 502);
      assert.equal(e.type, 'api_error');
      return true;
    },
  );
});

test('mid-stream failure surfaces as an error in the SDK stream', async () => {
  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'fake:content=a b c d e,disconnect_after=2' }],
    stream: true,
  });
  let text = '';
  await assert.rejects(
    (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content || '';
    })(),
    (e) => e instanceof OpenAI.APIError,
  );
  assert.equal(text, 'a b');
});

test('concurrent streams through the SDK', async () => {
  const runs = Array.from({ length: 50 }, async (_, i) => {
    const s = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `fake:content=n${i} done` }],
      stream: true,
    });
    let t = '';
    for await (const c of s) t += c.choices[0]?.delta?.content || '';
    return t;
  });
  const got = await Promise.all(runs);
  got.forEach((t, i) => assert.equal(t, `n${i} done`));
});
