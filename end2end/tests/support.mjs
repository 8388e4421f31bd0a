// Starts the release server on a free port with a fresh embedded database, and Chromium.
import { spawn, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const binary = process.env.REELTIME_BIN ?? join(root, 'target', 'release', 'reeltime');
const siteRoot = process.env.LEPTOS_SITE_ROOT ?? join(root, 'target', 'site');

const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh database on the test Postgres; returns its URL. */
export function createDatabase() {
  const name = `reeltime_e2e_${randomUUID().replaceAll('-', '')}`;
  execFileSync('psql', [adminUrl, '-qc', `create database "${name}"`]);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => execFileSync('psql', [adminUrl, '-qc', `drop database if exists "${name}" with (force)`]) };
}

/** Run SQL on a database, as an operator with psql would. */
export function sql(databaseUrl, statement) {
  return execFileSync('psql', [databaseUrl, '-qAtc', statement], { encoding: 'utf8' }).trim();
}

/**
 * Start `reeltime`; resolves once it serves. With `databaseUrl` it uses that database,
 * otherwise an embedded one in a fresh data directory. The built-in processor and the sample
 * clip are off unless `env` turns them on, so jobs stay as the test leaves them.
 */
export async function startServer({ dataDir, databaseUrl, port = 0, env: extra = {} } = {}) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'reeltime-e2e-'));
  // When tests run as root the embedded cluster belongs to the postgres user: let it in.
  chmodSync(dir, 0o755);
  const env = {
    ...process.env,
    REELTIME_PORT: String(port),
    REELTIME_DATA_DIR: dir,
    LEPTOS_SITE_ROOT: siteRoot,
    RUST_LOG: 'warn',
    REELTIME_PROCESSOR: 'off',
    REELTIME_SAMPLE_CLIP: 'off',
    ...extra,
  };
  delete env.DATABASE_URL;
  if (databaseUrl) env.DATABASE_URL = databaseUrl;
  const child = spawn(binary, [], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error('reeltime did not start in 90 s')), 90_000);
    child.once('exit', (code) => reject(new Error(`reeltime exited early (${code})`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = line.match(/^Reeltime is running at (\S+)/);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    dataDir: dir,
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keepData) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Submit a job through the JSON API. */
export async function createJob(baseUrl, inputUrl) {
  const response = await fetch(`${baseUrl}/api/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_url: inputUrl }),
  });
  if (response.status !== 201) throw new Error(`create job: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Wait until the page has hydrated. */
export async function waitHydrated(page) {
  await page.waitForSelector('main[data-hydrated="true"]', { timeout: 15_000 });
}
