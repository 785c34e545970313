// Shared by the SDK tests: free ports, the Python fake upstream
// (tests/integration/fakeupstream.py), `umbra serve` on a config, and an
// orderly stop that fails on sanitizer reports.
import { spawn } from 'node:child_process';
import { writeFileSync, readFileSync, openSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
export const UMBRA_BIN = process.env.UMBRA_BIN || path.join(repo, 'build', 'umbra');
const PYTHON = process.env.UMBRA_PYTHON || 'python3';
const FAKE = path.join(repo, 'tests', 'integration', 'fakeupstream.py');

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Start the fake upstream; `extra` are more of its command-line options
 * (--set NAME=JSON for what its wire fakes expect, --vertex-sa PATH). */
export function startFake(extra = []) {
  return new Promise((resolve, reject) => {
    const args = [FAKE, '--port', '0', ...extra];
    const p = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'inherit'] });
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

async function waitHealthy(port, proc, logPath) {
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

/** Write cfgText to dir/umbra.yaml and serve it; resolves when /health answers. */
export async function startUmbra(dir, port, cfgText) {
  const cfgPath = path.join(dir, 'umbra.yaml');
  writeFileSync(cfgPath, cfgText);
  const logPath = path.join(dir, 'umbra.log');
  const log = openSync(logPath, 'a');
  const proc = spawn(UMBRA_BIN, ['serve', '-c', cfgPath], { stdio: ['ignore', log, log] });
  await waitHealthy(port, proc, logPath);
  return { proc, cfgPath, logPath };
}

/** Stop the processes (SIGTERM, then SIGKILL after 5 s); throw if umbra
 * crashed or its log holds a sanitizer report. */
export async function stopAll(umbra, procs) {
  for (const p of procs) {
    if (p && p.exitCode === null) {
      p.kill('SIGTERM');
      await new Promise((r) => { const t = setTimeout(() => { p.kill('SIGKILL'); r(); }, 5000); p.on('exit', () => { clearTimeout(t); r(); }); });
    }
  }
  if (!umbra) return;
  const text = readFileSync(umbra.logPath, 'utf8');
  if (umbra.proc.signalCode && umbra.proc.signalCode !== 'SIGTERM' && umbra.proc.signalCode !== 'SIGKILL') {
    throw new Error('umbra died of ' + umbra.proc.signalCode + ':\n' + text);
  }
  if (/AddressSanitizer|runtime error:/.test(text)) throw new Error('sanitizer report:\n' + text);
}
