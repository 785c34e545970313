// The official `openai` npm SDK as a client of umbra (node --test, Node 20).
// Starts the Python fake upstream (tests/integration/fakeupstream.py) and
// `umbra serve` on free 127.0.0.1 ports, and kills both at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const UMBRA_BIN = process.env.UMBRA_BIN || path.join(repo, 'build', 'umbra');
const PYTHON = process.env.UMBRA_PYTHON || 'python3';
const FAKE = path.join(repo, 'tests', 'integration', 'fakeupstream.py');

let fake, umbra, client, dir, logPath, baseURL;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function startFake() {
  return new Promise((resolve, reject) => {
    const p = spawn(PYTHON, [FAKE, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('fake upstream did not start: ' + out)), 10000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/READY (\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc: p, port: Number(m[1]) });
      }
    });
    p.on('exit', (code) => reject(new Error('fake upstream exited ' + code)));
  });
}

async function waitHealthy(port, proc) {
  const end = Date.now() + 15000;
  while (Date.now() < end) {
    if (proc.exitCode !== null) throw new Error('umbra exited ' + proc.exitCode + ':\n' + readFileSync(logPath, 'utf8'));
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health`);
      if (r.status === 200) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('umbra not healthy:\n' + readFileSync(logPath, 'utf8'));
}

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
  const cfgPath = path.join(dir, 'umbra.yaml');
  writeFileSync(cfgPath, cfg);
  logPath = path.join(dir, 'umbra.log');
  const log = openSync(logPath, 'a');
  umbra = spawn(UMBRA_BIN, ['serve', '-c', cfgPath], { stdio: ['ignore', log, log] });
  await waitHealthy(port, umbra);
  baseURL = `http://127.0.0.1:${port}/v1`;
  client = new OpenAI({ baseURL, apiKey: 'sk-client-not-forwarded', maxRetries: 0, timeout: 20000 });
});

after(async () => {
  for (const p of [umbra, fake && fake.proc]) {
    if (p && p.exitCode === null) {
      p.kill('SIGTERM');
      await new Promise((r) => { const t = setTimeout(() => { p.kill('SIGKILL'); r(); }, 5000); p.on('exit', () => { clearTimeout(t); r(); }); });
    }
  }
  if (umbra && umbra.signalCode && umbra.signalCode !== 'SIGTERM' && umbra.signalCode !== 'SIGKILL') {
    throw new Error('umbra died of ' + umbra.signalCode + ':\n' + readFileSync(logPath, 'utf8'));
  }
  const text = logPath ? readFileSync(logPath, 'utf8') : '';
  if (/AddressSanitizer|runtime error:/.test(text)) throw new Error('sanitizer report:\n' + text);
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
