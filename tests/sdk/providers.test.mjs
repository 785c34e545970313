// Every provider type, both dialects: the official `openai` and
// `@anthropic-ai/sdk` packages against one umbra whose models sit on each
// provider type, all served by the Python fake upstream (its wire fakes
// answer each vendor's format and check what the gateway sent: keys,
// versions, SigV4 signatures, JWT-issued tokens). For each pair: a chat, a
// stream, and a tool call round trip, with usage equal to what the fake
// reported (11 prompt, 7 completion tokens).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { freePort, startFake, startUmbra, stopAll } from './harness.mjs';

const PROMPT = 11;
const COMPLETION = 7;
const TEXT = 'Hello from the fake upstream.';
const TOOLS_OA = [{
  type: 'function',
  function: { name: 'get_weather', description: 'Weather now', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
}];
const TOOLS_AN = [{ name: 'get_weather', description: 'Weather now', input_schema: TOOLS_OA[0].function.parameters }];

let fake, umbra, oa, an, dir;

// One provider per type, each with one model named after it.
const TYPES = ['openai', 'azure', 'anthropic', 'bedrock', 'vertex', 'ollama'];

function providersYaml(fakeUrl, saPath) {
  return [
    'providers:',
    `  - { name: p-openai, type: openai, url: "${fakeUrl}", api_key: sk-upstream, max_attempts: 1 }`,
    `  - { name: p-azure, type: azure, url: "${fakeUrl}", api_key: az-key, deployment: dep-1, max_attempts: 1 }`,
    `  - { name: p-anthropic, type: anthropic, url: "${fakeUrl}", api_key: sk-ant-up, max_attempts: 1 }`,
    `  - { name: p-bedrock, type: bedrock, url: "${fakeUrl}", region: us-east-1, access_key_id: AKIDSDKTEST, secret_access_key: sdk-secret, max_attempts: 1 }`,
    `  - { name: p-vertex, type: vertex, url: "${fakeUrl}", project: proj-1, location: us-central1, credentials_file: "${saPath}", max_attempts: 1 }`,
    `  - { name: p-ollama, type: ollama, url: "${fakeUrl}", max_attempts: 1 }`,
    'models:',
    '  - { name: m-openai, provider: p-openai, upstream_model: gpt-up }',
    '  - { name: m-azure, provider: p-azure }',
    '  - { name: m-anthropic, provider: p-anthropic, upstream_model: claude-up }',
    '  - { name: m-bedrock, provider: p-bedrock, upstream_model: "anthropic.claude-up-v1:0" }',
    '  - { name: m-vertex, provider: p-vertex, upstream_model: gemini-up }',
    '  - { name: m-ollama, provider: p-ollama, upstream_model: "llama-up:8b" }',
  ];
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'umbra-sdk-prov-'));
  // the fake makes the service account whose JWTs its /token verifies
  const saPath = path.join(dir, 'sa.json');
  fake = await startFake([
    '--set', 'expect_api_key="sk-ant-up"',
    '--set', 'azure_key="az-key"',
    '--set', `aws_keys=${JSON.stringify({ AKIDSDKTEST: 'sdk-secret' })}`,
    '--set', 'vertex_project="proj-1"',
    '--set', 'vertex_require_signatures=true', // as Gemini 3: call signatures must come back
    '--vertex-sa', saPath,
  ]);
  const fakeUrl = `http://127.0.0.1:${fake.port}`;
  const port = await freePort();
  const cfg = [`listen: "127.0.0.1:${port}"`, 'workers: 1', ...providersYaml(fakeUrl, saPath), ''].join('\n');
  umbra = await startUmbra(dir, port, cfg);
  oa = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 20000 });
  an = new Anthropic({ baseURL: `http://127.0.0.1:${port}`, apiKey: 'sk-client', maxRetries: 0, timeout: 20000 });
});

after(async () => {
  await stopAll(umbra, [umbra && umbra.proc, fake && fake.proc]);
});

for (const type of TYPES) {
  const model = `m-${type}`;

  test(`${type}: openai SDK chat, stream and tool round trip`, async () => {
    const r = await oa.chat.completions.create({ model, messages: [{ role: 'user', content: 'Say hello' }] });
    assert.equal(r.choices[0].message.content, TEXT);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage.prompt_tokens, PROMPT);
    assert.equal(r.usage.completion_tokens, COMPLETION);

    const s = await oa.chat.completions.create({
      model, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Say hello' }],
    });
    let text = '';
    let usage = null;
    for await (const ch of s) {
      if (ch.choices.length) text += ch.choices[0].delta.content || '';
      if (ch.usage) usage = ch.usage;
    }
    assert.equal(text, TEXT);
    assert.equal(usage.prompt_tokens, PROMPT);
    assert.equal(usage.completion_tokens, COMPLETION);

    // the model calls two tools at once; the client answers both
    const msgs = [{ role: 'user', content: 'fake:tools=2' }];
    const t = await oa.chat.completions.create({ model, messages: msgs, tools: TOOLS_OA });
    const calls = t.choices[0].message.tool_calls;
    assert.equal(t.choices[0].finish_reason, 'tool_calls');
    assert.equal(calls.length, 2);
    assert.deepEqual(calls.map((c) => JSON.parse(c.function.arguments).city), ['Paris', 'Oslo']);
    assert.equal(new Set(calls.map((c) => c.id)).size, 2);
    msgs.push(t.choices[0].message);
    for (const c of calls) msgs.push({ role: 'tool', tool_call_id: c.id, content: `sunny in ${JSON.parse(c.function.arguments).city}` });
    msgs.push({ role: 'user', content: 'Summarise.' });
    const done = await oa.chat.completions.create({ model, messages: msgs, tools: TOOLS_OA });
    assert.equal(done.choices[0].message.content, TEXT);

    // streamed tool calls arrive as deltas with their ids
    const ts = await oa.chat.completions.create({ model, messages: [{ role: 'user', content: 'fake:tools=2' }], tools: TOOLS_OA, stream: true });
    const args = {};
    const ids = {};
    for await (const ch of ts) {
      for (const d of (ch.choices[0] && ch.choices[0].delta.tool_calls) || []) {
        if (d.id) ids[d.index] = d.id;
        args[d.index] = (args[d.index] || '') + ((d.function && d.function.arguments) || '');
      }
    }
    assert.equal(Object.keys(ids).length, 2);
    assert.deepEqual(Object.values(args).map((a) => JSON.parse(a).city), ['Paris', 'Oslo']);
  });

  test(`${type}: anthropic SDK messages, stream and tool round trip`, async () => {
    const r = await an.messages.create({ model, max_tokens: 64, messages: [{ role: 'user', content: 'Say hello' }] });
    assert.equal(r.type, 'message');
    assert.deepEqual(r.content, [{ type: 'text', text: TEXT }]);
    assert.equal(r.stop_reason, 'end_turn');
    assert.equal(r.usage.input_tokens, PROMPT);
    assert.equal(r.usage.output_tokens, COMPLETION);

    const stream = an.messages.stream({ model, max_tokens: 64, messages: [{ role: 'user', content: 'Say hello' }] });
    let text = '';
    stream.on('text', (d) => { text += d; });
    const final = await stream.finalMessage();
    assert.equal(text, TEXT);
    assert.equal(final.usage.output_tokens, COMPLETION);
    assert.equal(final.usage.input_tokens, PROMPT);

    const msgs = [{ role: 'user', content: 'fake:tools=2' }];
    const t = await an.messages.create({ model, max_tokens: 64, messages: msgs, tools: TOOLS_AN });
    assert.equal(t.stop_reason, 'tool_use');
    const uses = t.content.filter((b) => b.type === 'tool_use');
    assert.equal(uses.length, 2);
    assert.deepEqual(uses.map((u) => u.input.city), ['Paris', 'Oslo']);
    msgs.push({ role: 'assistant', content: t.content });
    msgs.push({
      role: 'user',
      content: [
        ...uses.map((u) => ({ type: 'tool_result', tool_use_id: u.id, content: `sunny in ${u.input.city}` })),
        { type: 'text', text: 'Summarise.' },
      ],
    });
    const done = await an.messages.create({ model, max_tokens: 64, messages: msgs, tools: TOOLS_AN });
    assert.deepEqual(done.content, [{ type: 'text', text: TEXT }]);

    // streamed tool use: the SDK assembles the input from input_json_delta
    const ts = an.messages.stream({ model, max_tokens: 64, messages: [{ role: 'user', content: 'fake:tools=2' }], tools: TOOLS_AN });
    const fm = await ts.finalMessage();
    assert.deepEqual(fm.content.filter((b) => b.type === 'tool_use').map((u) => u.input.city), ['Paris', 'Oslo']);
    assert.equal(fm.stop_reason, 'tool_use');
  });
}

test('models.list in both SDKs lists every model in its own shape', async () => {
  const want = TYPES.map((t) => `m-${t}`);
  const oaIds = [];
  for await (const m of oa.models.list()) oaIds.push(m.id);
  assert.deepEqual(oaIds, want);
  const anIds = [];
  for await (const m of an.models.list()) {
    assert.equal(m.type, 'model');
    anIds.push(m.id);
  }
  assert.deepEqual(anIds, want);
});

test('errors reach the anthropic SDK as its own error classes', async () => {
  await assert.rejects(an.messages.create({ model: 'no-such-model', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof Anthropic.NotFoundError && e.error.type === 'error' && e.error.error.type === 'not_found_error');
  await assert.rejects(an.messages.create({ model: 'm-bedrock', max_tokens: 8, messages: [{ role: 'user', content: 'fake:status=429,retry_after=3' }] }),
    (e) => e instanceof Anthropic.RateLimitError && e.headers.get('retry-after') === '3');
  await assert.rejects(oa.chat.completions.create({ model: 'm-anthropic', messages: [{ role: 'user', content: 'fake:status=429,retry_after=3' }] }),
    (e) => e instanceof OpenAI.RateLimitError && e.headers.get('retry-after') === '3');
});
