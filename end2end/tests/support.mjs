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
/** The first admin every test server gets, through its setup link. */
export const ADMIN = { email: 'admin@example.com', password: 'correct horse battery staple' };

/**
 * Start `reeltime`, resolving once it serves, signed in: on a first start the printed setup
 * link creates {@link ADMIN} and `server.cookie` is that session; a restart on the same
 * database passes the earlier `cookie` on.
 */
export async function startServer({ dataDir, databaseUrl, port = 0, env: extra = {}, cookie } = {}) {
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
  let setupLink;
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error('reeltime did not start in 90 s')), 90_000);
    child.once('exit', (code) => reject(new Error(`reeltime exited early (${code})`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.includes('/setup?token=')) setupLink = line.trim();
      const match = line.match(/^Reeltime is running at (\S+)/);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    });
  });
  if (setupLink) cookie = await setUp(url, setupLink);
  return {
    url,
    cookie,
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

/** Submit a job through the JSON API, as the admin. */
export async function createJob(server, inputUrl) {
  const response = await api(server, '/api/jobs', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_url: inputUrl }),
  });
  if (response.status !== 201) throw new Error(`create job: ${response.status} ${await response.text()}`);
  return response.json();
}

/** The server writes the sample clip at its first start; wait until it is served. */
export async function waitForSample(server) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const response = await api(server, '/samples/sample-1080p.mp4', { method: 'HEAD' });
    if (response.status === 200) return;
    if (Date.now() > deadline) throw new Error(`no sample clip: HTTP ${response.status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Wait until the page has hydrated. */
export async function waitHydrated(page) {
  await page.waitForSelector('main[data-hydrated="true"]', { timeout: 15_000 });
}

/** Create the first admin through the setup link; returns the session cookie. */
async function setUp(baseUrl, link) {
  const token = new URL(link).searchParams.get('token');
  const response = await fetch(`${baseUrl}/setup`, {
    method: 'POST',
    redirect: 'manual',
    headers: { origin: baseUrl, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, email: ADMIN.email, password: ADMIN.password, confirm: ADMIN.password }),
  });
  if (response.status !== 303) throw new Error(`setup: HTTP ${response.status}`);
  const session = response.headers.getSetCookie().find((c) => c.startsWith('reeltime_session='));
  if (!session) throw new Error('setup set no session cookie');
  return session.split(';')[0];
}

/** `fetch` on the server as its signed-in admin (a page's origin, the session cookie). */
export function api(server, path, init = {}) {
  return fetch(`${server.url}${path}`, {
    redirect: 'manual',
    ...init,
    headers: { origin: server.url, cookie: server.cookie, ...(init.headers ?? {}) },
  });
}

/** A browser context signed in as the admin (or anonymous with `{ signedIn: false }`). */
export async function newContext(browser, server, { signedIn = true, ...options } = {}) {
  const context = await browser.newContext(options);
  if (signedIn && server.cookie) {
    const [name, value] = server.cookie.split('=');
    await context.addCookies([{ name, value, url: server.url, httpOnly: true, sameSite: 'Lax' }]);
  }
  return context;
}
